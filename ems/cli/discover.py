"""``ems discover --echonet``: list the ECHONET Lite nodes on the LAN with their objects and property maps."""

from __future__ import annotations

import argparse
import asyncio

from ems.errors import UsageError


def add_discover_parser(sub) -> None:
    """Register ``ems discover``."""
    p = sub.add_parser("discover", help="list ECHONET Lite nodes, objects and property maps on the LAN",
                       description="Ask for the node profile's instance list (0xD6) - by multicast to "
                                   "224.0.23.0:3610, or at the given --host addresses - then read every "
                                   "object's property maps (0x9D/0x9E/0x9F).")
    p.add_argument("--echonet", action="store_true", help="discover ECHONET Lite nodes (the only kind so far)")
    p.add_argument("--host", action="append", metavar="ADDR",
                   help="ask this node directly instead of multicast (repeatable)")
    p.add_argument("--port", type=int, default=3610, help="UDP port of the nodes (default 3610)")
    p.add_argument("--local-port", type=int, default=3610,
                   help="UDP port to listen on for answers (default 3610, where real nodes answer; 0: any)")
    p.add_argument("--wait", type=float, default=2.0, help="seconds to gather answers (default 2)")
    p.add_argument("--brief", action="store_true", help="count the properties instead of listing them")
    p.set_defaults(func=_cmd_discover)


def _cmd_discover(args: argparse.Namespace) -> int:
    if not args.echonet:
        raise UsageError("ems discover: say what to discover: --echonet")
    if not 1 <= args.port <= 65535 or not 0 <= args.local_port <= 65535:
        raise UsageError(f"ems discover: --port {args.port} / --local-port {args.local_port} out of range")
    if not 0 < args.wait <= 60:
        raise UsageError(f"ems discover: --wait {args.wait} must be in (0, 60] s")
    return asyncio.run(_discover(args))


async def _discover(args: argparse.Namespace) -> int:
    from devices.echonet.client import EchonetSocket
    from devices.echonet.discovery import discover, format_nodes
    from devices.errors import DeviceError

    sock = EchonetSocket(local_port=args.local_port)
    try:
        targets = [(h, args.port) for h in args.host] if args.host else None
        nodes = await discover(sock, targets, wait_s=args.wait, timeout_s=min(1.0, args.wait))
    except DeviceError as exc:  # e.g. the answer port is taken
        raise UsageError(f"ems discover: {exc.message}") from None
    finally:
        await sock.close()
    print(format_nodes(nodes, verbose=not args.brief))
    return 0 if nodes else 1
