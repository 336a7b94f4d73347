"""The local web app (`p2p app`): a browser face over the same library calls as the CLI.

Layout: `serve.py` binds 127.0.0.1 and runs uvicorn; `web.py` assembles the
Starlette application; `security.py` guards every request (Host, one-time
token -> cookie, Origin, CSP); `state.py` holds the open home and the unlocked
identity; `jobs.py` runs long operations with progress; `lan_node.py` runs the
library's LAN node; `live.py` streams changes to open pages (SSE); `view.py`
renders with the reader's language (`i18n.py`, catalogue in `locale/`);
`words.py` says results in plain words. Each page is one module with its
template beside it, and its tests:

    pages/setup.py        setup.html unlock.html me.html      tests/test_app_security.py
    pages/communities.py  communities.html invite.html         tests/test_app_pages.py
    pages/feed.py         feed.html (+ macros.html)            tests/test_app_pages.py
    pages/chat.py         chat.html                            tests/test_app_pages.py
    pages/dm.py           dm.html                              tests/test_app_pages.py
    pages/manage.py       manage.html                          tests/test_app_pages.py
    pages/moving.py       moving.html verified.html job.html   tests/test_app_pages.py
    pages/wifi.py         wifi.html                            tests/test_app_browser.py
    pages/attachments.py  (files, thumbnails)                  tests/test_app_attachments.py

The browser test (tests/test_app_browser.py) drives all of them in Chromium
and takes the screenshots in docs/screenshots/.
"""
