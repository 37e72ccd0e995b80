"""`vq tui`: a live Textual dashboard of queue health, with actions (see vq/tui/app.py)."""
