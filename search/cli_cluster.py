"""The cluster commands of ``hpsearch``: ``cluster``, ``submit``, ``jobs`` and
``tracking`` (their parsers and what they run); ``search/cli.py`` adds them to
its parser. Errors are the command line's own (``BadInput``: one line, exit 2)."""

from __future__ import annotations

import argparse
from pathlib import Path

from hpsearch.search.cli_common import EXIT_OK, EXIT_RUNTIME, BadInput
from hpsearch.search.cli_common import number as _number
from hpsearch.search.cli_common import positive_int as _positive_int
from hpsearch.search.cli_common import runtime_error as _runtime_error


def add_parsers(sub, storage_opts, *, run_parser) -> None:
    """The four commands' subparsers, on ``sub`` (``storage_opts`` adds --storage;
    ``run_parser``: `run`'s, which reads the run flags `submit` passes on)."""
    cl = sub.add_parser("cluster", help="start, inspect or stop a local multi-node Ray cluster",
                        description="up: a Ray head (dashboard and Jobs API on 127.0.0.1) plus "
                                    "--workers worker nodes, each its own raylet, with token "
                                    "authentication (a generated token in $HPSEARCH_HOME/ray_token, "
                                    "mode 0600). status: nodes and resources. down: stop them.")
    cl.add_argument("action", choices=["up", "status", "down"])
    cl.add_argument("--workers", type=int, default=1, metavar="N", help="worker nodes (1)")
    cl.add_argument("--cpus-per-node", type=_positive_int, default=1, metavar="N")
    cl.add_argument("--gpus-per-node", type=int, default=0, metavar="N")
    cl.add_argument("--memory", type=_number, default=2.0, metavar="GB",
                    help="memory per node in GB, set explicitly (2)")
    cl.add_argument("--port", type=_positive_int, default=6379, help="GCS port (6379)")
    cl.add_argument("--dashboard-port", type=_positive_int, default=8265, help="(8265)")
    cl.add_argument("--public", action="store_true",
                    help="bind the dashboard and Jobs API to 0.0.0.0 (token still required)")
    cl.add_argument("--wait", type=_number, default=180.0, metavar="SECONDS",
                    help="up: how long to wait for every node to be alive in the cluster (180)")
    cl.set_defaults(func=cmd_cluster)

    sb = sub.add_parser("submit", help="submit a search (or several) to a Ray cluster as a Ray Job",
                        description="Validates every spec with the run flags here, uploads the "
                                    "project (without runs/, .git, virtual environments and what "
                                    ".gitignore or .rayignore name; refused over Ray's 512 MiB "
                                    "limit), runs `hpsearch run SPEC [SPEC ...] "
                                    "--address auto ...` on the cluster as one job, prints the "
                                    "job id and streams its logs.")
    sb.add_argument("spec", metavar="SPEC.yaml", help="spec file(s): SPEC.yaml [SPEC.yaml ...]")
    sb.add_argument("--address", default="http://127.0.0.1:8265",
                    help="Jobs API address (default http://127.0.0.1:8265)")
    sb.add_argument("--no-wait", action="store_true", help="print the job id and return")
    sb.add_argument("run_args", nargs=argparse.REMAINDER, metavar="-- RUN FLAGS",
                    help="flags for `hpsearch run` (e.g. -- --samples 8 --smoke)")
    sb.set_defaults(func=cmd_submit, run_parser=run_parser)

    jb = sub.add_parser("jobs", help="list Ray Jobs, print one's logs, or stop one")
    jb.add_argument("action", choices=["list", "logs", "stop"])
    jb.add_argument("job_id", nargs="?", metavar="ID")
    jb.add_argument("--address", default="http://127.0.0.1:8265")
    jb.set_defaults(func=cmd_jobs)

    tr = sub.add_parser("tracking", help="an MLflow tracking server for multi-node searches",
                        description="serve: `mlflow server` with a SQLite (or --backend-store-uri) "
                                    "backend and its own artifact root under the storage root, "
                                    "in its own process group. --public binds 0.0.0.0 and turns "
                                    "on MLflow's basic-auth app with a generated admin password.")
    tr.add_argument("action", choices=["serve"])
    tr.add_argument("--port", type=_positive_int, default=5001)
    tr.add_argument("--backend-store-uri", metavar="URI", help="e.g. postgresql://user@host/db")
    tr.add_argument("--public", action="store_true")
    storage_opts(tr)
    tr.set_defaults(func=cmd_tracking)


def cmd_cluster(args) -> int:
    from hpsearch.cluster import local

    try:
        if args.action == "up":
            state = local.up(workers=args.workers, cpus_per_node=args.cpus_per_node,
                             gpus_per_node=args.gpus_per_node, memory_gb=args.memory,
                             port=args.port, dashboard_port=args.dashboard_port, public=args.public,
                             wait=args.wait)
            print(f"Ray cluster up: head + {state['workers']} worker node(s) at {state['address']}; "
                  f"dashboard and Jobs API {state['dashboard']} (token in {state['token_path']})")
            print(f"submit a search: hpsearch submit spaces/quickstart.yaml --address "
                  f"{state['dashboard']}")
        elif args.action == "status":
            print(local.status())
        else:
            n = local.down()
            print(f"Ray cluster stopped ({n} processes)")
    except (local.ClusterError, ValueError) as e:
        raise BadInput(str(e)) from None
    except local.NodesDidNotJoin as e:
        return _runtime_error(str(e))
    return EXIT_OK


def cmd_submit(args) -> int:
    from hpsearch.cluster import jobs
    from hpsearch.results.storage import Storage

    # argparse's REMAINDER also swallows submit's own options given after SPEC
    rest, run_args = list(args.run_args), []
    cut = rest.index("--") if "--" in rest else len(rest)
    head, run_args = rest[:cut], rest[cut + 1:]
    specs = [args.spec]
    while head and not head[0].startswith("-"):  # SPEC.yaml SPEC.yaml ... before any flag
        specs.append(head.pop(0))
    while head:
        a = head.pop(0)
        if a == "--address" and head:
            args.address = head.pop(0)
        elif a.startswith("--address="):
            args.address = a.split("=", 1)[1]
        elif a == "--no-wait":
            args.no_wait = True
        else:
            run_args.append(a)  # a run flag given without "--"
    # every spec, with these run flags, is checked here before anything is uploaded; an
    # absolute file path (pretrained weights, vectors) may exist only on the cluster's
    # nodes: the job checks it there, before its search starts
    from hpsearch.search.cli_common import specs_from_args
    from hpsearch.trainables.constraints import absolute_files_checked_elsewhere

    run_ns = args.run_parser.parse_args([*specs, *run_args])
    with absolute_files_checked_elsewhere():
        specs_from_args(run_ns)
    if run_ns.storage:  # its form (a folder, not a URI); whether it is writable is the job's check
        Storage.resolve(run_ns.storage)
    if "--storage" not in run_args:  # the job's working dir is a temporary copy: keep results here
        run_args += ["--storage", str(Storage.resolve(None).root.resolve())]
    try:
        job_id = jobs.submit([Path(s) for s in specs], address=args.address, run_args=run_args)
    except jobs.JobError as e:
        raise BadInput(str(e)) from None
    print(f"submitted job {job_id} to {args.address}", flush=True)
    if args.no_wait:
        return EXIT_OK
    status = jobs.follow(args.address, job_id)
    print(f"job {job_id}: {status}")
    return EXIT_OK if status == "SUCCEEDED" else EXIT_RUNTIME


def cmd_jobs(args) -> int:
    from hpsearch.cluster import jobs

    try:
        c = jobs.client(args.address)
    except jobs.JobError as e:
        raise BadInput(str(e)) from None
    if args.action == "list":
        for j in c.list_jobs():
            print(f"{j.submission_id}\t{str(j.status).split('.')[-1]}\t{j.entrypoint}")
        return EXIT_OK
    if not args.job_id:
        raise BadInput(f"hpsearch jobs {args.action}: give the job ID (see `hpsearch jobs list`)")
    if args.action == "logs":
        print(c.get_job_logs(args.job_id), end="")
    else:
        c.stop_job(args.job_id)
        print(f"stop requested for job {args.job_id}")
    return EXIT_OK


def cmd_tracking(args) -> int:
    from hpsearch.cluster.tracking_server import serve
    from hpsearch.results.storage import Storage

    storage = Storage.resolve(args.storage)
    storage.check_writable()  # the store (or its artifact root) lives there
    return serve(storage.root, port=args.port, public=args.public,
                 backend=args.backend_store_uri)
