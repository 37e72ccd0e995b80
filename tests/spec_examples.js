// The spec's three fetch examples, verbatim (the spec's job-queue-system.md, "Usage Examples"),
// run with Node's built-in fetch against a live vq daemon. Only `fetch` is wrapped: it
// prefixes the server's address (the examples use relative URLs, as a browser page would)
// and puts the minted token where the examples say YOUR_TOKEN.
const BASE = process.env.VQ_API;
const TOKEN = process.env.VQ_TOKEN;
const nodeFetch = globalThis.fetch;
const fetch = (path, options) => nodeFetch(BASE + path, {
  ...options,
  headers: Object.fromEntries(Object.entries(options.headers).map(
    ([k, v]) => [k, v.replace('YOUR_TOKEN', TOKEN)])),
});

async function main() {
  const out = [];
  {
    const response = await fetch('/api/jobs/video-generation', {
      method: 'POST',
      headers: {
        'Content-Type': 'application/json',
        'Authorization': 'Bearer YOUR_TOKEN'
      },
      body: JSON.stringify({
        userId: 'user-123',
        projectId: 'project-456',
        prompt: 'Create a video about AI technology',
        script: { /* script data */ },
        scenes: [ /* scene data */ ],
        options: {
          quality: 'high',
          resolution: '1080p',
          style: 'modern'
        },
        priority: 'high',
        userSubscription: 'pro'
      })
    });
    out.push({status: response.status, body: await response.json()});
  }
  {
    const response = await fetch('/api/jobs/delayed', {
      method: 'POST',
      headers: {
        'Content-Type': 'application/json',
        'Authorization': 'Bearer YOUR_TOKEN'
      },
      body: JSON.stringify({
        jobType: 'image-generation',
        data: {
          userId: 'user-123',
          projectId: 'project-456',
          prompt: 'Generate an image of a sunset',
          options: {
            width: 1024,
            height: 768
          }
        },
        delay: 300000 // 5 minutes in milliseconds
      })
    });
    out.push({status: response.status, body: await response.json()});
  }
  {
    const response = await fetch('/api/jobs/recurring', {
      method: 'POST',
      headers: {
        'Content-Type': 'application/json',
        'Authorization': 'Bearer YOUR_TOKEN'
      },
      body: JSON.stringify({
        jobType: 'content-analysis',
        data: {
          userId: 'user-123',
          projectId: 'project-456',
          content: 'Analyze this content',
          type: 'text'
        },
        cronExpression: '0 0 * * *', // Daily at midnight
        options: {
          skipCache: true
        }
      })
    });
    out.push({status: response.status, body: await response.json()});
  }
  console.log(JSON.stringify(out));
}

main().catch((error) => { console.error(error); process.exit(1); });
