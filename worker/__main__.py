"""Run one bot's worker standalone: ``python -m worker --config FILE --bot ID``.

For debugging, and for process managers other than botvisor (the benchmarks run it under
circus and supervisord). Standalone, nobody verifies its messages, so it signs them with a
throwaway key; it still owns and locks its bot directory like any worker.
"""

from __future__ import annotations

import argparse
import sys

from protocol.signing import new_secret


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker", description=__doc__.splitlines()[0])
    parser.add_argument("--config", "-c", required=True, help="the botvisor TOML file")
    parser.add_argument("--bot", required=True, help="the bot id to run")
    parser.add_argument("--subscribe-timeout", type=float, default=1.0,
                        help="seconds to wait for a supervisor on the events endpoint (default 1)")
    args = parser.parse_args(argv)

    from protocol.config import ConfigError, load_config

    from .main import run_worker
    from .spec import WorkerSpec

    try:
        config = load_config(args.config)
        bot = config.bot(args.bot)
    except ConfigError as exc:
        print(f"botvisor worker: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyError:
        print(f"botvisor worker: {args.config}: no bot {args.bot!r} in [[bots]]", file=sys.stderr)
        return 78
    spec = WorkerSpec(
        server_name=config.supervisor.server_name, bot=bot, bot_dir=config.bot_dir(bot.id),
        events_endpoint=config.endpoint("events"), commands_endpoint=config.endpoint("commands"),
        secret=new_secret(), log_dir=config.log_dir, subscribe_timeout=args.subscribe_timeout,
    )
    return run_worker(spec)


if __name__ == "__main__":
    sys.exit(main())
