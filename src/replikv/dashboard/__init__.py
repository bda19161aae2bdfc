"""``replikv dashboard``: a live web page of a cluster, and a playground to break it.

server.py serves the page and its JSON/WebSocket API (aiohttp), poller.py turns
INFO polls into the page's state and event timeline, actions.py holds the
levers (kill, pause, resume, restart, cut and heal a link) and the
write-then-read-everywhere probe. The page (static/) is hand-written HTML, CSS
and JavaScript shipped in the package: no CDN, no build step.
"""
