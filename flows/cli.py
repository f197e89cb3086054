"""The ``leadscore`` command. Thin over library functions (the way fastapi-cli is): every command is registered
through :func:`command`, which turns a problem the user can fix into one line and its exit code
(``leadscore.problems``) and lets real bugs keep their traceback. Heavy imports happen inside commands so
that ``leadscore --help`` answers at once.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(
    name="leadscore",
    help="Predict which sales leads will close: point-in-time features, a calibrated model tracked in MLflow, "
    "published scores and a campaign quality report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
log = logging.getLogger("leadscore")


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


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at each line (a test runner swaps it per command)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def _setup_logging() -> None:
    from rich.logging import RichHandler

    if not any(getattr(h, "leadscore", False) for h in log.handlers):
        console = _console()
        if console.is_terminal:
            handler = RichHandler(console=console, show_path=False, show_level=False, markup=False,
                                  log_time_format="[%H:%M:%S]")
        else:  # a log file or CI: plain lines, neither padded nor wrapped
            handler = _StderrHandler()
            handler.setFormatter(logging.Formatter("[%(asctime)s] %(message)s", "%H:%M:%S"))
        handler.leadscore = True
        log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    for note in _notes:
        log.info("threads: %s", note)
    _notes.clear()


def _fail(message: str, code: int = 2) -> None:
    from rich.markup import escape

    # The message is text, not markup: "[train]" or a bracket in a file name must reach the user as written.
    _console().print(f"[bold red]error:[/] {escape(message)}", markup=True, soft_wrap=True)
    raise typer.Exit(code)


_home_in_use: list = [None]  # the home of the command being run, to explain a failure on a full disk


def command(fn):
    """Register ``fn`` as a command whose user-facing problems end in one line and their exit code."""

    @functools.wraps(fn)
    def run(*args, **kwargs):
        from leadscore.problems import user_message

        _home_in_use[0] = None
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except (Exception, KeyboardInterrupt) as exc:
            said = user_message(exc, _home_in_use[0])
            if said is None:
                raise  # a bug: keep its traceback
            # Frames kept alive by the traceback pin native objects (duckdb) past interpreter shutdown.
            traceback.clear_frames(exc.__traceback__)
            del exc
            _fail(*said)

    return app.command()(run)


def home_override(home: Path | None) -> Path | None:
    """``--home``, else LEADSCORE_HOME, else None (the config's own home): the one place this is decided."""
    return home or (Path(os.environ["LEADSCORE_HOME"]) if os.environ.get("LEADSCORE_HOME") else None)


_notes: list[str] = []  # what prepare_environment decided, said once logging is set up


def _load(config: Path, home: Path | None):
    from leadscore.config import load_config
    from leadscore.runtime import prepare_environment

    cfg = load_config(config, home_override(home))
    _home_in_use[0] = cfg.paths
    _notes[:] = prepare_environment(cfg.paths)
    return cfg


def _check_inputs(cfg, names: tuple[str, ...]) -> None:
    """The inputs the first step reads, checked before the Prefect server starts (about 10 s): a missing export
    file, or a step run before ingest, is said at once."""
    if names[0] == "ingest":
        from ingest.files import export_format

        for name, table in cfg.export_tables().items():
            export_format(table, f"data.{name}")
    else:
        from flows.steps import read_ingest_manifest

        read_ingest_manifest(cfg.paths)


def _run_steps(config: Path, home: Path | None, names: tuple[str, ...], since_last: bool = False,
               outputs: bool = False) -> None:
    """Run steps as one Prefect flow run, with a timer; print where the outputs are."""
    cfg = _load(config, home)
    _setup_logging()
    _check_inputs(cfg, names)
    what = names[0] if len(names) == 1 else "pipeline"
    server = None
    if not os.environ.get("PREFECT_API_URL"):  # Prefect reads it when imported: start the server first
        from flows.server import start_temporary_server

        assert "prefect" not in sys.modules, "Prefect was imported before its server was chosen"

        log.info("starting a temporary Prefect server for %s (about 10 s)", what)
        server = start_temporary_server(cfg.paths.prefect)
    try:
        from flows.pipeline import COMMANDS, run_flow
        from leadscore.paths import new_run_id

        started = time.perf_counter()
        (COMMANDS[what] if len(names) == 1 else run_flow)(cfg, new_run_id(), names, since_last)
        log.info("%s finished in %.1f s", what, time.perf_counter() - started)
    finally:
        if server is not None:
            server.stop()
    if outputs:
        from flows.steps import summarize_outputs

        typer.echo("\nOutputs")  # on stdout, one line each so paths can be copied whole
        for key, value in summarize_outputs(cfg).items():
            typer.echo(f"  {key:<17}{value}")


@command
def generate(
    out: Annotated[Path, typer.Option(help="Folder for the CSV exports (created if missing).")] = Path("export"),
    leads: Annotated[int, typer.Option(min=100, help="How many leads.")] = 100_000,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same files.")] = 7,
    config_out: Annotated[Optional[Path], typer.Option(help="Also write a leadscore config for these files here.")] = None,
) -> None:
    """Write a synthetic CRM export (leads, activities, stage changes, campaigns) and its truth.csv."""
    from ingest.synthetic import demo_config_text, generate_crm, write_crm
    from leadscore.paths import write_text_atomic

    _setup_logging()
    started = time.perf_counter()
    crm = generate_crm(leads, seed)
    written = write_crm(crm, out)
    if config_out is not None:
        write_text_atomic(config_out, demo_config_text(out.resolve(), (config_out.parent / ".leadscore").resolve()))
    log.info("generated %s leads, %s activities, %s stage changes in %.1f s -> %s", f"{crm.leads.num_rows:,}",
             f"{crm.activities.num_rows:,}", f"{crm.opportunities.num_rows:,}", time.perf_counter() - started,
             written["leads"].parent)


@command
def init(
    export_dir: Annotated[Path, typer.Argument(metavar="EXPORT_DIR",
                                               help="Folder with the CRM's export files (CSV or Parquet).")],
    crm: Annotated[str, typer.Option(help="Whose column names to expect: salesforce, hubspot, dynamics or auto "
                                          "(the one the columns match best).")] = "auto",
    out: Annotated[Path, typer.Option(help="Where to write the config.")] = Path("leadscore.toml"),
    force: Annotated[bool, typer.Option("--force", help="Replace --out if it exists.")] = False,
) -> None:
    """Propose a config from an export: which file holds the leads, the stage history, the activities and the
    campaign costs, each column's role, the won and lost stages, and which columns to leave out (post-outcome)."""
    from ingest.discover import propose_config
    from leadscore.paths import write_text_atomic

    _setup_logging()
    if crm not in ("auto", "salesforce", "hubspot", "dynamics"):
        _fail(f"--crm: must be salesforce, hubspot, dynamics or auto; found {crm!r}")
    if out.exists() and not force:
        _fail(f"--out: {out} exists; pass --force to replace it, or another --out")
    proposal = propose_config(export_dir, crm)
    write_text_atomic(out, proposal.text)
    for role, path in proposal.files.items():
        log.info("init: %s <- %s", role, path.name)
    if proposal.left_out:
        log.info("init: left out %d leads columns: %s", len(proposal.left_out), ", ".join(proposal.left_out))
    for line in proposal.warnings:
        log.warning("init: %s", line)
    log.info("init: wrote %s (%s); next: leadscore run --config %s", out, proposal.crm, out)


@command
def ingest(config: ConfigOpt, home: HomeOpt = None) -> None:
    """Read the export files, check every row, write canonical tables and the quarantine."""
    _run_steps(config, home, ("ingest",))


@command
def features(config: ConfigOpt, home: HomeOpt = None) -> None:
    """Build point-in-time features and labels from the ingested tables."""
    _run_steps(config, home, ("features",))


@command
def train(config: ConfigOpt, home: HomeOpt = None) -> None:
    """Train and evaluate a model, register it in MLflow and promote it if it passes the gate."""
    _run_steps(config, home, ("train",))


@command
def score(
    config: ConfigOpt,
    home: HomeOpt = None,
    since_last: Annotated[bool, typer.Option("--since-last", help="Only leads that are new or changed since "
                                             "their last published score (or scored by another model version).")] = False,
) -> None:
    """Score the open leads with the champion model, route them to queues and publish them."""
    _run_steps(config, home, ("score",), since_last=since_last, outputs=True)


@command
def report(config: ConfigOpt, home: HomeOpt = None) -> None:
    """Write the campaign and source lead-quality report."""
    _run_steps(config, home, ("report",), outputs=True)


@command
def run(config: ConfigOpt, home: HomeOpt = None) -> None:
    """Run the whole pipeline: ingest, features, train, score, report."""
    from flows.steps import STEPS

    _run_steps(config, home, STEPS, outputs=True)


@command
def demo(
    home: HomeOpt = None,
    leads: Annotated[int, typer.Option(min=1000, help="Leads in the synthetic CRM.")] = 100_000,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic CRM.")] = 7,
) -> None:
    """Generate the synthetic CRM (if missing), write a config for it and run the whole pipeline."""
    from flows.steps import STEPS
    from ingest.synthetic import FILES, demo_config_text, generate_crm, write_crm
    from leadscore.paths import write_text_atomic

    from leadscore.config import check_home
    from leadscore.paths import Home

    _setup_logging()
    root = check_home((home_override(home) or Path(".leadscore")).resolve())
    _home_in_use[0] = Home(root).ensure()
    export = root / "data" / f"synthetic-{leads}-{seed}"
    if not all((export / f).is_file() for f in FILES.values()):
        started = time.perf_counter()
        write_crm(generate_crm(leads, seed), export)
        log.info("generated a synthetic CRM with %s leads in %.1f s -> %s", f"{leads:,}",
                 time.perf_counter() - started, export)
    else:
        log.info("using the synthetic CRM in %s", export)
    config_path = root / "demo.toml"
    write_text_atomic(config_path, demo_config_text(export, root))
    log.info("config: %s", config_path)
    _run_steps(config_path, root, STEPS, outputs=True)


@command
def deploy(
    config: ConfigOpt,
    home: HomeOpt = None,
    serve: Annotated[bool, typer.Option("--serve", help="Also run the scheduled runs from this process "
                                        "(flow.serve) instead of leaving them to a worker.")] = False,
) -> None:
    """Create the scheduled runs (retrain, score, campaign report; crons from the config's schedule section)
    on the Prefect server named by PREFECT_API_URL."""
    from flows import deployments

    cfg = _load(config, home)
    override = cfg.home if home_override(home) else None  # scheduled runs get the override, not the file's home
    sched = cfg.schedule
    crons = {"retrain": sched.retrain, "score": sched.score, "report": sched.report}
    if serve:
        typer.echo(f"serving the {deployments.deployment_name(cfg)} deployments "
                   f"({', '.join(f'{k}: {v}' for k, v in crons.items())}, {sched.timezone}); stop with Ctrl+C")
        deployments.serve(cfg, override)
        return
    names = deployments.register(cfg, override)
    for (key, _), name in zip(deployments.SCHEDULED, names, strict=True):
        typer.echo(f"deployment {name:<40} cron {crons[key]!r} ({sched.timezone})")
    typer.echo(f"\nstart a worker to execute them:  uv run prefect worker start --pool {sched.work_pool}")


def _share(p: float) -> str:
    """A probability in six characters that reads 1.000 or 0.000 only if it is (0.999916 reads 0.9999)."""
    text = f"{p:>6.3f}"
    if text.strip() in ("1.000", "0.000") and p not in (0.0, 1.0):
        text = f"{min(max(p, 0.0001), 0.9999):.4f}"
    return text


@command
def history(
    lead_id: Annotated[str, typer.Argument(metavar="LEAD_ID", help="The lead's id as in the export.")],
    config: ConfigOpt,
    home: HomeOpt = None,
) -> None:
    """A lead's published scores over time: the probability of a win from now on, its trend against the
    score before, the fit at arrival, and the reasons at each change of tier."""
    import pandas as pd

    from serving.ledger import lead_history

    cfg = _load(config, home)
    rows = lead_history(cfg.paths.ledger, lead_id)
    if rows.empty:
        _fail(f"lead {lead_id!r} has no published score in {cfg.paths.ledger}; check the id, or run "
              "`leadscore score --config FILE` first")
    for column in ("fit", "trend"):  # ledgers written before issue 14 lack them
        if column not in rows:
            rows[column] = None
    fit = pd.to_numeric(rows["fit"], errors="coerce")
    typer.echo(f"lead {lead_id}: {len(rows)} published score{'s' if len(rows) != 1 else ''}")
    typer.echo(f"{'scored_at':<21} {'model':>5} {'prob':>6} {'trend':<7} {'fit':>6} {'score':>5} tier  route")
    previous = None
    for r, f in zip(rows.itertuples(), fit):  # one line per published score of one lead
        trend = r.trend if isinstance(r.trend, str) else "-"
        fit_text = _share(f) if f == f else f"{'-':>6}"
        typer.echo(f"{r.scored_at:%Y-%m-%d %H:%M:%S}Z {r.model_version:>5} {_share(r.probability)} {trend:<7} "
                   f"{fit_text} {r.score:>5} {r.tier:^4}  {r.route}")
        if r.tier != previous:
            change = f"tier {previous} -> {r.tier}" if previous else f"first scored: tier {r.tier}"
            reasons = r.reasons if isinstance(r.reasons, str) and r.reasons else \
                "(no reasons: only tiers in scoring.reason_tiers get them)"
            typer.echo(f"{'':<21} {change}: {reasons}")
        previous = r.tier


@command
def serve(
    config: ConfigOpt,
    home: HomeOpt = None,
    host: Annotated[str, typer.Option(help="Address to listen on; anything but loopback needs LEADSCORE_API_KEY.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    workers: Annotated[Optional[int], typer.Option(min=1, help="Server processes (default: api.workers, 2).")] = None,
) -> None:
    """Serve the champion model over HTTP (POST /v1/score); docs at /docs."""
    from serving.api import serve as run_server

    cfg = _load(config, home)
    if workers is not None:
        cfg = cfg.model_copy(update={"api": cfg.api.model_copy(update={"workers": workers})})
    run_server(cfg, host, port)


def _who() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


SegmentOpt = Annotated[Optional[str], typer.Option(help="A segment's own model (a [[segments]] name) instead of the "
                                                       "global one.")]


def _model_name(cfg, segment: str | None) -> str:
    from models.registry import MODEL_NAME, segment_model_name

    if segment is None:
        return MODEL_NAME
    names = [s.name for s in cfg.segments]
    if segment not in names:
        _fail(f"--segment: {segment!r} is not a segment of the config ({', '.join(names) or 'it has none'})")
    return segment_model_name(segment)


@command
def models(config: ConfigOpt, home: HomeOpt = None, segment: SegmentOpt = None) -> None:
    """List the registered model versions with their aliases and test metrics."""
    from models.registry import list_versions

    cfg = _load(config, home)
    rows = list_versions(cfg.paths, _model_name(cfg, segment))
    if not rows:
        typer.echo("no model registered yet; run `leadscore train --config FILE`")
        return
    typer.echo("test metrics: fit (a win within the horizon of arrival) and probability (a win from now on)")
    typer.echo(f"{'version':>7}  {'aliases':<22} {'fit model':<11} {'fit_auc':>8} {'fit_ece':>7} {'prob_auc':>8} "
               f"{'prob_ece':>8}  gate")
    for r in rows:
        fmt = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
        typer.echo(f"{r['version']:>7}  {','.join(r['aliases']) or '-':<22} {r.get('model_kind', '-'):<11} "
                   f"{fmt(r['roc_auc']):>8} {fmt(r['ece']):>7} {fmt(r.get('now_roc_auc')):>8} "
                   f"{fmt(r.get('now_ece')):>8}  {_verdict(r['tags'], 'champion' in r['aliases'])}")


def _verdict(tags: dict[str, str], champion: bool) -> str:
    """The gate's verdict on a version, after what was last done to it by hand (promoted, rolled back, retired).
    Times are to the second: in a tie, a champion was last promoted, any other version last demoted."""
    events = []
    if tags.get("promoted_by") not in (None, "leadscore train"):
        events.append((tags.get("promoted_at", ""), champion,
                       f"promoted by {tags['promoted_by']}: {tags.get('promotion_reason')}"))
    if tags.get("rolled_back_at"):
        events.append((tags["rolled_back_at"], not champion, f"rolled back by {tags.get('rolled_back_by')} to "
                                                             f"version {tags.get('rolled_back_to')}: "
                                                             f"{tags.get('rollback_reason')}"))
    if tags.get("retired_at"):
        events.append((tags["retired_at"], not champion, f"retired: {tags.get('retirement_reason')}"))
    gate = tags.get("gate", "-")
    return f"{max(events)[2]}; gate: {gate}" if events else gate


@command
def promote(
    version: Annotated[str, typer.Argument(metavar="VERSION", help="The registered version to make champion.")],
    config: ConfigOpt,
    home: HomeOpt = None,
    reason: Annotated[str, typer.Option(help="Why; recorded on the version.")] = "promoted by hand",
    segment: SegmentOpt = None,
) -> None:
    """Make a model version the champion (recorded with who, why and when)."""
    from models.registry import promote as promote_version

    cfg = _load(config, home)
    previous = promote_version(cfg.paths, version, reason, _who(), name=_model_name(cfg, segment))
    typer.echo(f"version {version} is champion" + (f" (was version {previous})" if previous else ""))


@command
def rollback(
    config: ConfigOpt,
    home: HomeOpt = None,
    reason: Annotated[str, typer.Option(help="Why; recorded on the version rolled back.")] = "rolled back by hand",
) -> None:
    """Give the champion alias back to the previous champion."""
    from models.registry import rollback as rollback_champion

    current, previous = rollback_champion(_load(config, home).paths, reason, _who())
    typer.echo(f"champion rolled back from version {current} to version {previous}")


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
