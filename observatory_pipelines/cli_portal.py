"""``observatory portal``: the researcher portal, served by uvicorn on the configured database and store.

Wired into ``cli.build_parser`` through ``register(sub, add)``.
"""

from __future__ import annotations

import argparse


def cmd_portal(args: argparse.Namespace) -> int:
    import uvicorn

    from observatory_pipelines.core.platform import storage
    from observatory_pipelines.core.platform.database import migrated_engine
    from observatory_pipelines.portal.app import create_app
    from observatory_pipelines.portal.security import config_from_env

    config = config_from_env()
    store = storage.store_from_env()
    with migrated_engine() as engine:
        app = create_app(engine, store, config)
        print(f"researcher portal on http://{args.host}:{args.port} (links name {config.base_url})", flush=True)
        # Behind a reverse proxy the client's address (sign-in throttling counts per address) comes
        # from X-Forwarded-For, trusted only from the addresses --forwarded-allow-ips names.
        uvicorn.run(
            app,
            host=args.host,
            port=args.port,
            log_level="warning",
            proxy_headers=bool(args.forwarded_allow_ips),
            forwarded_allow_ips=args.forwarded_allow_ips or None,
            server_header=False,
        )
    return 0


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{value}' is not a port number") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port number (1-65535)")
    return port


def register(sub, add) -> None:
    p = add(sub, "portal", cmd_portal, "serve the researcher portal (sign-in, corpora, downloads, API tokens)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=_port, default=8080, help="port to listen on (default 8080)")
    p.add_argument(
        "--forwarded-allow-ips",
        metavar="ADDRESSES",
        help="the reverse proxy's addresses, whose X-Forwarded-For is trusted (comma-separated)",
    )
