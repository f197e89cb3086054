"""The ``leadscore`` command. Thin over library functions; heavy imports happen inside commands so that
``leadscore --help`` answers at once. User errors (LeadscoreError) print one line and exit 2; real bugs keep
their traceback.
"""

from __future__ import annotations

import errno
import logging
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Annotated, Optional

import typer

from leadscore.errors import LeadscoreError

app = typer.Typer(
    name="leadscore",
    help="Predict which sales leads will close: point-in-time features, a calibrated model tracked in MLflow, "
    "published scores and a campaign quality report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"leadscore {version('leadscore')}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[Optional[bool], typer.Option("--version", callback=_version, is_eager=True,
                                                    help="Show the version and exit.")] = None,
) -> None:
    """Predict which sales leads will close."""


ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="The leadscore TOML config for your export.")]
HomeOpt = Annotated[
    Optional[Path],
    typer.Option("--home", help="Where runs, models and published files live (overrides LEADSCORE_HOME and the config)."),
]


def _console():
    from rich.console import Console

    console = Console(stderr=True, highlight=False)
    if not console.is_terminal:  # logs and CI: long paths on one line rather than wrapped at 80 columns
        console = Console(stderr=True, highlight=False, width=200)
    return console


def _setup_logging(verbose: bool = False) -> None:
    from rich.logging import RichHandler

    log = logging.getLogger("leadscore")
    if not any(isinstance(h, RichHandler) for h in log.handlers):
        handler = RichHandler(console=_console(), show_path=False, show_level=verbose, markup=False,
                              log_time_format="[%H:%M:%S]")
        log.addHandler(handler)
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    log.propagate = False


def _fail(message: str, code: int = 2) -> None:
    _console().print(f"[bold red]error:[/] {message}", markup=True, soft_wrap=True)
    raise typer.Exit(code)


_HOME_IN_USE: list = [None]  # the home of the command being run, for explaining a full disk


def _load(config: Path, home: Path | None):
    from leadscore.config import load_config
    from leadscore.paths import Home
    from leadscore.runtime import prepare_environment

    cfg = load_config(config)
    override = home or (Path(os.environ["LEADSCORE_HOME"]) if os.environ.get("LEADSCORE_HOME") else None)
    if override is not None:
        cfg = cfg.with_home(override.resolve())
    _HOME_IN_USE[0] = Home(cfg.home)
    prepare_environment(Home(cfg.home))
    return cfg


def _run(step: str, fn, *args):
    """Run one flow with a timer; turn user errors into one line and exit code 2."""
    _setup_logging()
    log = logging.getLogger("leadscore")
    started = time.perf_counter()
    result = fn(*args)
    log.info("%s finished in %.1f s", step, time.perf_counter() - started)
    return result


# What a full disk or a missing permission looks like when it surfaces through a library.
_DISK_FULL = ("No space left on device", "database or disk is full", "Disk quota exceeded")
_FULL = "free some space and run again"
_REFUSED = "fix the permissions and run again"
_ENVIRONMENT_ERRNOS = {errno.ENOSPC: ("no space left on the device", _FULL), errno.EDQUOT: ("disk quota exceeded", _FULL),
                       errno.EFBIG: ("file too large for this system's limits", _FULL),
                       errno.EACCES: ("permission denied", _REFUSED), errno.EPERM: ("operation not permitted", _REFUSED),
                       errno.EROFS: ("read-only file system", _REFUSED)}


def environment_problem(exc: BaseException) -> str | None:
    """A one-line description if ``exc`` (or what caused it) is a full disk or a refused permission: a problem
    of the machine the user can fix, not a bug in leadscore."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _ENVIRONMENT_ERRNOS:
            what, advice = _ENVIRONMENT_ERRNOS[exc.errno]
            where = f" at {exc.filename}" if exc.filename else ""
            return f"{what}{where}; {advice}"
        text = str(exc)
        if any(s in text for s in _DISK_FULL):
            return f"no space left on the device ({text.splitlines()[0][:200]}); {_FULL}"
        exc = exc.__cause__ or exc.__context__
    return None


def low_space(home) -> str | None:
    """When the home's device is nearly full, any failure is most likely that (a database that runs out of
    space mid-run fails in its own words, and cannot even log why)."""
    if home is None:
        return None
    from leadscore.runtime import free_bytes, min_free_bytes

    free = free_bytes(home)
    if free is None or free >= max(min_free_bytes(), 4_000_000):
        return None
    return f"only {free / 1e6:.1f} MB free on the device holding {home.root}, which is most likely why; {_FULL}"


def _guard(body):
    try:
        return body()
    except LeadscoreError as exc:
        message, code = str(exc), exc.exit_code
        space = low_space(_HOME_IN_USE[0])
        # Frames kept alive by the traceback pin native objects (duckdb) past interpreter shutdown.
        traceback.clear_frames(exc.__traceback__)
        del exc
        _fail(f"{message} ({space})" if space and "MB free" not in message else message, code)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except Exception as exc:
        problem = environment_problem(exc)
        if problem is None:
            space = low_space(_HOME_IN_USE[0])
            if space is None:
                raise  # a bug: keep its traceback
            problem = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:160]}; {space}"
        traceback.clear_frames(exc.__traceback__)
        del exc
        _fail(problem, 2)


def _print_outputs(cfg) -> None:
    """Where everything is, on stdout, one line each so paths can be copied whole."""
    from leadscore.steps import summarize_outputs

    typer.echo("\nOutputs")
    for key, value in summarize_outputs(cfg).items():
        typer.echo(f"  {key:<17}{value}")


@app.command()
def generate(
    out: Annotated[Path, typer.Option(help="Folder for the CSV exports (created if missing).")] = Path("export"),
    leads: Annotated[int, typer.Option(min=100, help="How many leads.")] = 100_000,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same files.")] = 7,
    config_out: Annotated[Optional[Path], typer.Option(help="Also write a leadscore config for these files here.")] = None,
) -> None:
    """Write a synthetic CRM export (leads, activities, stage changes, campaigns) and its truth.csv."""

    def body():
        from leadscore.synthetic import demo_config_text, generate_crm, write_crm

        _setup_logging()
        started = time.perf_counter()
        crm = generate_crm(leads, seed)
        written = write_crm(crm, out)
        if config_out is not None:
            config_out.parent.mkdir(parents=True, exist_ok=True)
            config_out.write_text(demo_config_text(out.resolve(), (config_out.parent / ".leadscore").resolve()))
        logging.getLogger("leadscore").info(
            "generated %s leads, %s activities, %s stage changes in %.1f s -> %s", f"{crm.leads.num_rows:,}",
            f"{crm.activities.num_rows:,}", f"{crm.opportunities.num_rows:,}", time.perf_counter() - started,
            written["leads"].parent)

    _guard(body)


def _flow_command(config: Path, home: Path | None, step: str, flow_name: str, *, run_id: bool = True,
                  outputs: bool = False, extra: tuple = ()) -> None:
    """Load the config, run one flow of ``flows.pipeline`` with a timer, print where the outputs are."""

    def body():
        cfg = _load(config, home)
        server = None
        if not os.environ.get("PREFECT_API_URL"):  # Prefect reads it when imported: start the server first
            from flows.server import start_temporary_server
            from leadscore.paths import Home

            _setup_logging()
            logging.getLogger("leadscore").info("starting a temporary Prefect server for %s (about 10 s)", step)
            server = start_temporary_server(Home(cfg.home).prefect)
        try:
            import flows.pipeline as pipeline
            from leadscore.paths import new_run_id

            args = ((cfg, new_run_id()) if run_id else (cfg,)) + extra
            _run(step, getattr(pipeline, flow_name), *args)
        finally:
            if server is not None:
                server.stop()
        if outputs:
            _print_outputs(cfg)

    _guard(body)


@app.command()
def ingest(config: ConfigOpt, home: HomeOpt = None) -> None:
    """Read the export files, check every row, write canonical tables and the quarantine."""
    _flow_command(config, home, "ingest", "ingest_flow")


@app.command()
def features(config: ConfigOpt, home: HomeOpt = None) -> None:
    """Build point-in-time features and labels from the ingested tables."""
    _flow_command(config, home, "features", "features_flow", run_id=False)


@app.command()
def train(config: ConfigOpt, home: HomeOpt = None) -> None:
    """Train and evaluate a model, register it in MLflow and promote it if it passes the gate."""
    _flow_command(config, home, "train", "train_flow")


@app.command()
def score(
    config: ConfigOpt,
    home: HomeOpt = None,
    since_last: Annotated[bool, typer.Option("--since-last", help="Only leads that are new or changed since "
                                             "their last published score (or scored by another model version).")] = False,
) -> None:
    """Score the open leads with the champion model, route them to queues and publish them."""
    _flow_command(config, home, "score", "score_flow", outputs=True, extra=(since_last,))


@app.command()
def report(config: ConfigOpt, home: HomeOpt = None) -> None:
    """Write the campaign and source lead-quality report."""
    _flow_command(config, home, "report", "report_flow", outputs=True)


@app.command()
def run(config: ConfigOpt, home: HomeOpt = None) -> None:
    """Run the whole pipeline: ingest, features, train, score, report."""
    _flow_command(config, home, "pipeline", "run_flow", outputs=True)


@app.command()
def demo(
    home: HomeOpt = None,
    leads: Annotated[int, typer.Option(min=1000, help="Leads in the synthetic CRM.")] = 100_000,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic CRM.")] = 7,
) -> None:
    """Generate the synthetic CRM (if missing), write a config for it and run the whole pipeline."""
    root = (home or Path(os.environ.get("LEADSCORE_HOME", ".leadscore"))).resolve()

    def body():
        from leadscore.synthetic import FILES, demo_config_text, generate_crm, write_crm

        _setup_logging()
        log = logging.getLogger("leadscore")
        export = root / "data" / f"synthetic-{leads}-{seed}"
        if not all((export / f).is_file() for f in FILES.values()):
            started = time.perf_counter()
            write_crm(generate_crm(leads, seed), export)
            log.info("generated a synthetic CRM with %s leads in %.1f s -> %s", f"{leads:,}",
                     time.perf_counter() - started, export)
        else:
            log.info("using the synthetic CRM in %s", export)
        config_path = root / "demo.toml"
        config_path.write_text(demo_config_text(export, root), encoding="utf-8")
        log.info("config: %s", config_path)
        return config_path

    config_path = _guard(body)
    _flow_command(config_path, root, "pipeline", "run_flow", outputs=True)


@app.command()
def deploy(
    config: ConfigOpt,
    home: HomeOpt = None,
    serve: Annotated[bool, typer.Option("--serve", help="Also run the scheduled runs from this process "
                                        "(flow.serve) instead of leaving them to a worker.")] = False,
) -> None:
    """Create the scheduled runs (retrain, score, campaign report; crons from the config's schedule section)
    on the Prefect server named by PREFECT_API_URL."""

    def body():
        from flows import deployments

        cfg = _load(config, home)
        override = cfg.home if (home or os.environ.get("LEADSCORE_HOME")) else None
        sched = cfg.schedule
        crons = {"retrain": sched.retrain, "score": sched.score, "report": sched.report}
        if serve:
            typer.echo(f"serving the {deployments.deployment_name(cfg)} deployments ({', '.join(f'{k}: {v}' for k, v in crons.items())}, "
                       f"{sched.timezone}); stop with Ctrl+C")
            deployments.serve(cfg, override)
            return
        names = deployments.register(cfg, override)
        for (key, _), name in zip(deployments.SCHEDULED, names, strict=True):
            typer.echo(f"deployment {name:<40} cron {crons[key]!r} ({sched.timezone})")
        typer.echo(f"\nstart a worker to execute them:  uv run prefect worker start --pool {sched.work_pool}")

    _guard(body)


@app.command()
def history(
    lead_id: Annotated[str, typer.Argument(help="The lead's id as in the export.")],
    config: ConfigOpt,
    home: HomeOpt = None,
) -> None:
    """A lead's published scores over time, with the reasons at each change of tier."""

    def body():
        from leadscore.paths import Home
        from serving.ledger import lead_history

        cfg = _load(config, home)
        rows = lead_history(Home(cfg.home).ledger, lead_id)
        if rows.empty:
            _fail(f"lead {lead_id!r} has no published score in {Home(cfg.home).ledger}; check the id, or run "
                  "`leadscore score --config FILE` first", code=1)
        typer.echo(f"lead {lead_id}: {len(rows)} published scores")
        typer.echo(f"{'scored_at':<21} {'model':>5} {'prob':>6} {'score':>5} tier  route")
        previous = None
        for r in rows.itertuples():  # one line per published score of one lead
            typer.echo(f"{r.scored_at:%Y-%m-%d %H:%M:%S}Z {r.model_version:>5} {r.probability:>6.3f} {r.score:>5} "
                       f"{r.tier:^4}  {r.route}")
            if r.tier != previous:
                change = f"tier {previous} -> {r.tier}" if previous else f"first scored: tier {r.tier}"
                reasons = r.reasons if isinstance(r.reasons, str) and r.reasons else \
                    "(no reasons: only tiers in scoring.reason_tiers get them)"
                typer.echo(f"{'':<21} {change}: {reasons}")
            previous = r.tier

    _guard(body)


@app.command()
def serve(
    config: ConfigOpt,
    home: HomeOpt = None,
    host: Annotated[str, typer.Option(help="Address to listen on; anything but loopback needs LEADSCORE_API_KEY.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[Optional[int], typer.Option(min=1, help="Server processes (default: api.workers, 2).")] = None,
) -> None:
    """Serve the champion model over HTTP (POST /v1/score); docs at /docs."""

    def body():
        from serving.api import serve as run_server

        cfg = _load(config, home)
        if workers is not None:
            cfg = cfg.model_copy(update={"api": cfg.api.model_copy(update={"workers": workers})})
        run_server(cfg, host, port)

    _guard(body)


def _who() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


@app.command()
def models(config: ConfigOpt, home: HomeOpt = None) -> None:
    """List the registered model versions with their aliases and test metrics."""

    def body():
        from models.registry import list_versions

        cfg = _load(config, home)
        rows = list_versions(_home_of(cfg))
        if not rows:
            typer.echo("no model registered yet; run `leadscore train --config FILE`")
            return
        typer.echo(f"{'version':>7}  {'aliases':<22} {'roc_auc':>8} {'ece':>7}  gate")
        for r in rows:
            fmt = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
            typer.echo(f"{r['version']:>7}  {','.join(r['aliases']) or '-':<22} {fmt(r['roc_auc']):>8} {fmt(r['ece']):>7}  "
                       f"{r['tags'].get('gate', '-')}")

    _guard(body)


@app.command()
def promote(
    version: Annotated[str, typer.Argument(help="The registered version to make champion.")],
    config: ConfigOpt,
    home: HomeOpt = None,
    reason: Annotated[str, typer.Option(help="Why; recorded on the version.")] = "promoted by hand",
) -> None:
    """Make a model version the champion (recorded with who, why and when)."""

    def body():
        from models.registry import promote as promote_version

        cfg = _load(config, home)
        previous = promote_version(_home_of(cfg), version, reason, _who())
        typer.echo(f"version {version} is champion" + (f" (was version {previous})" if previous else ""))

    _guard(body)


@app.command()
def rollback(
    config: ConfigOpt,
    home: HomeOpt = None,
    reason: Annotated[str, typer.Option(help="Why; recorded on the version rolled back.")] = "rolled back by hand",
) -> None:
    """Give the champion alias back to the previous champion."""

    def body():
        from models.registry import rollback as rollback_champion

        cfg = _load(config, home)
        current, previous = rollback_champion(_home_of(cfg), reason, _who())
        typer.echo(f"champion rolled back from version {current} to version {previous}")

    _guard(body)


def _home_of(cfg):
    from leadscore.paths import Home

    return Home(cfg.home)


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
