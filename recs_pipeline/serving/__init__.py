"""The serving API: published lists refreshed by live popularity and the reader's session.

- ``scoring``: the maths as plain functions (decay, trend, sessions, blend, fallback chain).
- ``live``: live state behind one protocol, in process or in Redis.
- ``snapshot``: the published versions of a site, loaded whole and swapped by reference.
- ``intake``: validation of posted events.
- ``app``: the FastAPI app; ``server``: building it from the environment and running uvicorn.
"""
