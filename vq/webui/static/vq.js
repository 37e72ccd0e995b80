/* vq web dashboard: keeps a page's live parts fresh. An element with data-live="URL" listens
   to that Server-Sent Events stream (vq/webui/live.py); on each `change` it has htmx fetch
   its fragment again (its hx-trigger includes "refresh"), at most every 300 ms. */
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("[data-live]").forEach(function (element) {
    var source = new EventSource(element.getAttribute("data-live"));
    var due = null;
    source.addEventListener("change", function () {
      if (due !== null) return;
      due = setTimeout(function () {
        due = null;
        htmx.trigger(element, "refresh");
      }, 300);
    });
    source.addEventListener("ended", function () {
      source.close(); /* the session ended: the next poll goes to the login page */
    });
    window.addEventListener("pagehide", function () {
      source.close();
    });
  });
});
