"""The local web app: a browser face over the same library calls as the CLI.

Layout: `web.py` assembles the application, `security.py` guards every request,
`state.py` holds the open home and the unlocked identity, `jobs.py` runs long
operations with progress, `live.py` streams changes to open pages, and
`pages/` has one module per page with its template beside it.
"""
