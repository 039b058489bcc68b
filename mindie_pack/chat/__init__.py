"""`mindie-pack chat`: a small local web page that talks to a MindIE service through a streaming proxy.

- stream.py  reads MindIE's OpenAI chat stream (both chunk shapes) into text pieces and one end state
- request.py builds the upstream request from the page's fields, and the same request as a curl command
- app.py     the Starlette app: the static page, /api/info (target and models), /api/chat (the proxy)
- static/index.html  the whole page (HTML, CSS and JS inline: no build step, no CDN, works offline)
"""
