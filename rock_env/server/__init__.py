"""The server tier: an admin (FastAPI) with an embedded worker, remote workers, placement and state.

``rock-env admin start`` runs :func:`rock_env.server.app.create_app` under uvicorn;
``rock-env worker start --admin URL`` runs a worker that registers with it.
"""
