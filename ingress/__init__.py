"""The Flask ingress: verifies, validates, records, enqueues, answers; reads for frontends.

gunicorn runs "ingress:create_app()"; the CLI is `flask --app ingress <command>`.
"""

from __future__ import annotations

import logging
import time

from flask import Flask

from shared.actions import load_routes
from shared.db import autocommit_engine, make_engine, make_sessionmaker
from shared.settings import Settings, current


def create_app(settings: Settings | None = None) -> Flask:
    """The ingress app, with `settings` (tests build their own), else the process's one
    Settings (shared.settings.current), which Celery's configuration reads too."""
    settings = settings or current()
    app = Flask(__name__)
    # `//api//jobs` is not `/api/jobs`: Werkzeug's redirect to the merged path is an HTML page.
    app.url_map.merge_slashes = False
    # One byte over the real limit: Werkzeug truncates an over-limit chunked body to this
    # size instead of refusing it, so a body that reaches it is known to be too large.
    app.config["BODY_LIMIT"] = settings.max_body_bytes
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes + 1
    app.json.sort_keys = False
    app.extensions["settings"] = settings
    # Read and checked once: a malformed ACTION_ROUTES_FILE stops startup (ConfigError).
    app.extensions["action_routes"] = load_routes(settings.action_routes_file)
    # Every wait for the database is bounded (a frozen server answers 503, never hangs a
    # request), below the recorder's own 10 s: a request queued behind the writer's stuck
    # batch waits for that batch and then its own, and both fail within it.
    engine = make_engine(settings.database_url, settings.database_timeout)
    app.extensions["engine"] = engine
    app.extensions["sessionmaker"] = make_sessionmaker(engine)
    app.extensions["autocommit_engine"] = autocommit_engine(engine, settings.database_timeout)

    # The time signed timestamps are compared with (tests fix it).
    app.extensions["clock"] = time.time

    from ingress import actions, api, body, cli, errors, hooks, limits, ops
    from ingress.db import close_session
    from ingress.auth import TokenCache
    from ingress.recorder import Recorder

    app.extensions["recorder"] = Recorder(app.extensions["autocommit_engine"])
    app.extensions["token_cache"] = TokenCache()
    app.extensions["ratelimiter"] = limits.rate_limiter(settings.redis_url)
    errors.register(app)
    app.before_request(body.refuse_nul_in_url_and_headers)
    app.before_request(body.read_body)
    app.teardown_appcontext(close_session)
    for blueprint in (api.bp, actions.bp, hooks.bp, ops.bp, cli.bp):
        app.register_blueprint(blueprint)
    if not app.debug and not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return app
