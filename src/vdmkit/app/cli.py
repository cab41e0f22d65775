"""`vdmkit serve` and `vdmkit human-eval create`: parsing only; the work is in :mod:`vdmkit.app.server` and
:mod:`vdmkit.app.study`. Nothing heavy is imported until a command runs."""

from __future__ import annotations

import ipaddress
import socket
import sys

from vdmkit.cli_common import DTYPE_HELP, PRECISION_HELP, seed
from vdmkit.device import DEVICES_HELP

LOOPBACK_NAMES = ("localhost",)


def _is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_port_free(host: str, port: int) -> None:
    """Say which port is taken before anything starts (uvicorn would log it and exit 1)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise ValueError(f"--host {host!r} is not an address of this machine ({e})") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as e:
            raise ValueError(f"cannot listen on {host}:{port} ({e.strerror}); choose another --port or stop what "
                             "uses it") from None


def _cmd_serve(args) -> int:
    from vdmkit.app.server import Settings, create_app, require_web_stack
    from vdmkit.app.study import find_studies
    from vdmkit.device import resolve_device

    require_web_stack()
    import uvicorn

    resolve_device(args.device)  # a device that is not here fails before the server starts
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be in [0, 65535], got {args.port}")
    if args.threads < 0:
        raise ValueError(f"--threads must be >= 0 (0 = the CPUs other work leaves free), got {args.threads}")
    if args.port == 0:  # any free port: chosen here, so that the address printed below is the one served
        with socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((args.host.strip("[]"), 0))
            except OSError as e:  # socket.gaierror included: a name or address this machine does not have
                raise ValueError(f"--host {args.host!r} is not an address of this machine "
                                 f"({e.strerror or e})") from None
            args.port = s.getsockname()[1]
    _check_port_free(args.host, args.port)
    local = _is_loopback(args.host)
    if not local:
        print(f"warning: --host {args.host} exposes the app to the network; it has no login: anyone who can reach "
              "the port can generate videos and vote", file=sys.stderr)
    settings = Settings(runs=args.runs, out=args.out, db=args.db, studies=args.study or [], device=args.device,
                        threads=args.threads,
                        allowed_hosts=["127.0.0.1", "localhost", "[::1]", args.host] if local else None)
    app = create_app(settings)
    print(f"vdmkit serve: http://{args.host}:{args.port}/  (videos in {settings.out}, votes in {settings.db}, "
          f"studies in {', '.join(map(str, settings.studies))})", file=sys.stderr, flush=True)
    # the pages say it too (a study with one bad field is no study); the default folder, not made yet, is no problem
    named = settings.studies if args.study else [f for f in settings.studies if f.exists()]
    for problem in find_studies(named)[1]:
        print(f"warning: a study has a problem: {problem}", file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def _cmd_human_eval(args) -> int:
    from vdmkit.app.study import create_study
    from vdmkit.cli_common import weights_dtype
    from vdmkit.device import apply_threads

    dtype = weights_dtype(args)  # --precision bf16 --dtype fp16: refused at once, as sample refuses it
    apply_threads(args.threads)  # a negative count: refused before any work
    quiet = {"progress": lambda *_: None} if args.no_progress else {}
    out = create_study(args.models, args.prompts, args.n, args.out, steps=args.steps, sampler=args.sampler,
                       guidance=args.guidance, seed=args.seed, device=args.device, name=args.name, frames=args.frames,
                       height=args.height, width=args.width, precision=args.precision, dtype=dtype, **quiet)
    print(f"study ready: {out} (rate it with `vdmkit serve --study {out}`, page /eval)")
    return 0


def register(sub) -> None:
    p = sub.add_parser("serve", help="local web app: generate videos, gallery, side-by-side human evaluation")
    p.add_argument("--runs", default="runs", help="folder of runs/checkpoints offered as models (default: runs)")
    p.add_argument("--out", default="outputs/app", help="where generated videos go (default: outputs/app)")
    p.add_argument("--db", help="SQLite file of the votes (default: OUT/votes.sqlite)")
    p.add_argument("--study", action="append", help="a study folder, or a folder of studies (repeatable; "
                   "default: OUT/studies)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860, help="port to listen on (default 7860)")
    p.add_argument("--device", default="auto", help=DEVICES_HELP)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads for sampling (0 = the CPUs other work leaves free)")
    p.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser("human-eval", help="prepare side-by-side human-evaluation studies")
    actions = p.add_subparsers(dest="action", required=True)
    c = actions.add_parser("create", help="sample every model on the prompts (fixed seeds) and pair them")
    c.add_argument("--models", nargs="+", required=True, help="two or more checkpoint, run or diffusers folders, "
                   "each with LoRA adapters as MODEL+ADAPTER.safetensors[:SCALE] (repeat +ADAPTER for more); default "
                   "and default+fast name the bundled model and the same with its consistency adapter (lcm, 4 steps, "
                   "guidance 1, as `sample --fast`)")
    c.add_argument("--prompts", required=True, help="text file, one prompt per line")
    c.add_argument("--n", type=int, default=32, help="number of (prompt, seed) items; prompts repeat with the next "
                   "seed when there are fewer (default 32)")
    c.add_argument("--out", required=True, help="new study folder (its name is the study's name unless --name)")
    c.add_argument("--name", help="study name (default: the --out folder's name)")
    own = " (default: each model's own, as `vdmkit sample` samples it)"
    c.add_argument("--steps", type=int, help="sampler steps" + own)
    c.add_argument("--sampler", help="sampler" + own)
    c.add_argument("--guidance", type=float, help="classifier-free guidance" + own)
    c.add_argument("--frames", type=int, help="frames of every video" + own)
    c.add_argument("--height", type=int, help="height of every video" + own)
    c.add_argument("--width", type=int, help="width of every video" + own)
    c.add_argument("--seed", type=seed, default=0, help="seed of the first pass over the prompts: integer in [0, "
                   "2**63), or 'random' (drawn, recorded in study.json's settings)")
    c.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help=PRECISION_HELP)
    c.add_argument("--dtype", choices=("fp32", "bf16", "fp16"), help=DTYPE_HELP)
    c.add_argument("--device", default="auto", help=DEVICES_HELP)
    c.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = the CPUs other work leaves free)")
    c.add_argument("--no-progress", action="store_true", help="no progress line per video on stderr")
    c.set_defaults(func=_cmd_human_eval)
