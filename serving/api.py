"""Real-time scoring: a FastAPI app serving the champion model with the same scorer as batch scoring.

Leads arrive with their fields named as in the CRM export (the config's mapping). History features come
from the snapshot the last scoring run saved (``features.online``). When the registry's ``champion``
alias moves (a promotion or ``leadscore rollback``) or a scoring run saves a new snapshot, a background
thread loads the new state and swaps it in with one assignment: a request in flight keeps the state it
started with.
"""


import ipaddress
import json
import logging
import os
import secrets
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pyarrow as pa

from features.segments import segment_of
from leadscore import cells
from leadscore.config import Config
from leadscore.contract import export_column
from leadscore.errors import LeadscoreError

log = logging.getLogger("leadscore.api")
API_KEY_ENV = "LEADSCORE_API_KEY"


class ApiSetupError(LeadscoreError):
    pass


@dataclass(frozen=True)
class ServingState:
    """Everything one request needs; replaced whole, never changed in place."""

    scorer: Any  # serving.scorer.LeadScorer
    features: Any  # features.online.OnlineFeatures
    model_info: dict
    snapshot_stamp: float
    loaded_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))


class FieldErrors(Exception):
    def __init__(self, errors: list[dict]):
        self.errors = errors


class ScoringService:
    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.home = cfg.paths
        self.state: ServingState | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        lc = cfg.data.leads
        roles = {"campaign": lc.campaign, "source": lc.source, "account": lc.account}
        self.roles = {k: v for k, v in roles.items() if v}
        self.text = [c for c in (*lc.categorical, *lc.passthrough) if c not in self.roles.values()]
        # The outcome dates are known fields too: a lead posted as exported may carry them (empty while open).
        self.known_fields = {lc.id, *(f for f in (lc.created_at, lc.won_at, lc.lost_at) if f), *self.roles.values(),
                             *lc.categorical, *lc.numeric, *lc.passthrough}
        self.earliest_us = cells.us_of(cfg.data.earliest)

    # -- state ------------------------------------------------------------------------------------------
    def _snapshot_stamp(self) -> float:
        path = self.home.snapshot / "snapshot.json"
        return path.stat().st_mtime if path.is_file() else 0.0

    def load(self) -> ServingState:
        from features.online import OnlineFeatures
        from models import registry
        from serving.scorer import LeadScorer

        if not (self.home.snapshot / "snapshot.json").is_file():
            raise ApiSetupError(f"no scoring snapshot in {self.home.snapshot}; run `leadscore score --config FILE` "
                                "once before serving (it saves the history the API needs)")
        stamp = self._snapshot_stamp()
        scorer = LeadScorer.from_registry(self.home, segments=tuple(s.name for s in self.cfg.segments))
        info = registry.model_summary(self.home)
        return ServingState(scorer, OnlineFeatures.load(self.home.snapshot),
                            {**info, "features": scorer.model.features}, stamp)

    def reload_if_changed(self) -> bool:
        """Load a new state when the champion alias moved or a new snapshot was saved; True if swapped."""
        from models import registry

        current = self.state
        names = [s.name for s in self.cfg.segments]
        versions = (registry.champion_version(self.home),
                    *(registry.champion_version(self.home, registry.segment_model_name(n)) for n in names))
        if current is not None and self._snapshot_stamp() == current.snapshot_stamp and versions == (
                current.scorer.model_version,
                *(getattr(current.scorer.segments.get(n), "model_version", None) for n in names)):
            return False
        fresh = self.load()
        self.state = fresh  # one assignment: requests already running keep the state they read
        log.info(json.dumps({"event": "model_loaded", "model_version": fresh.scorer.model_version,
                             "previous": current.scorer.model_version if current else None}))
        return True

    def start_watching(self) -> None:
        def loop():
            while not self._stop.wait(self.cfg.api.reload_seconds):
                try:
                    self.reload_if_changed()
                except Exception as exc:  # keep serving the loaded model; say why the new one did not load
                    log.error(json.dumps({"event": "reload_failed", "error": str(exc)[:500]}))

        self._thread = threading.Thread(target=loop, name="leadscore-reload", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    # -- scoring ----------------------------------------------------------------------------------------
    def canonical(self, leads: list[dict[str, Any]], now: datetime, decimal: str | None = None) -> dict[str, np.ndarray]:
        """The export's fields -> canonical columns, by the cell rules ingest uses (leadscore.cells), one
        field at a time over the whole request. ``decimal``: how the export wrote numbers as text (saved with the
        snapshot by the scoring run); JSON numbers are numbers. Every problem is reported with its lead and field."""
        lc, errors = self.cfg.data.leads, []
        decimal = decimal or cells.decimal_for(lc.decimal, lc.delimiter)
        n = len(leads)
        out: dict[str, np.ndarray] = {}
        ids = cells.text(self._strings(leads, lc.id, errors))
        for i in np.flatnonzero(ids.is_null().to_numpy(zero_copy_only=False)):
            errors.append(_error(int(i), lc.id, "is required (the lead's id)", "missing"))
        out["lead_id"] = ids.to_numpy(zero_copy_only=False).astype(object)
        for role in ("campaign", "source", "account"):
            name = self.roles.get(role)
            out[role] = (cells.text(self._strings(leads, name, errors)).to_numpy(zero_copy_only=False).astype(object)
                         if name else np.full(n, None, dtype=object))
        for name in self.text:
            out[export_column(name)] = cells.text(self._strings(leads, name, errors)).to_numpy(
                zero_copy_only=False).astype(object)
        for name in lc.numeric:
            typed = np.array([float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else np.nan
                              for v in (lead.get(name) for lead in leads)])
            is_typed = np.array([isinstance(lead.get(name), (int, float)) and not isinstance(lead.get(name), bool)
                                 for lead in leads], bool)
            typed_values, typed_problem = cells.number(pa.array(typed, pa.float64()))
            text_values, text_problem = cells.number(self._strings(leads, name, errors, numbers=True), decimal)
            problem = np.where(is_typed, typed_problem, text_problem)
            for i in np.flatnonzero(problem != cells.OK):
                errors.append(_error(int(i), name, f"must be a number; found {leads[i].get(name)!r}", "float_parsing"))
            out[export_column(name)] = np.where(is_typed, typed_values.to_numpy(zero_copy_only=False),
                                                text_values.to_numpy(zero_copy_only=False)).astype(np.float64)
        if lc.created_at:
            raw = self._strings(leads, lc.created_at, errors)
            us, problem = cells.timestamp(raw, self.cfg.data.timezone, self.earliest_us,
                                          cells.us_of(now) + cells.US_PER_DAY, self.cfg.data.date_order)
            for i in np.flatnonzero(problem != cells.OK):
                found = leads[i].get(lc.created_at)
                msg = {cells.UNREADABLE: f"must be a date-time such as 2026-05-01T09:30:00Z; found {found!r}",
                       cells.TOO_EARLY: f"is before data.earliest ({self.cfg.data.earliest:%Y-%m-%d}); found {found!r}",
                       cells.TOO_LATE: f"is in the future; found {found!r}"}[int(problem[i])]
                errors.append(_error(int(i), lc.created_at, msg, "datetime_parsing"))
            out["created_at"] = np.where(us == np.iinfo(np.int64).min, cells.us_of(now), us)  # missing: now
        if errors:
            raise FieldErrors(errors)
        return out

    @staticmethod
    def _strings(leads: list[dict[str, Any]], name: str | None, errors: list, numbers: bool = False) -> list:
        """One field of every lead as text for the cell rules (JSON numbers by their text; with
        ``numbers``, JSON numbers are left out: they are read as numbers). NaN is missing. A value that is no valid
        Unicode, a JSON object or list, or a true/false where a number belongs, is an error of that lead and field."""
        values = []
        for i, lead in enumerate(leads):
            v = lead.get(name) if name else None
            if isinstance(v, (dict, list)):
                errors.append(_error(i, name, "must be text or a number, not a JSON object or list", "string_type"))
                v = None
            elif isinstance(v, bool) and numbers:
                errors.append(_error(i, name, "must be a number", "float_parsing"))
                v = None
            elif isinstance(v, float) and v != v or numbers and isinstance(v, (int, float)):
                v = None
            elif v is not None and not isinstance(v, str):
                v = str(v)
            values.append(v)
        ok = cells.valid_utf8(values)
        for i in np.flatnonzero(~ok):
            errors.append(_error(int(i), name, "must be valid Unicode text (it holds a lone surrogate)", "string_type"))
            values[i] = None
        return values

    def unmapped(self, leads: list[dict[str, Any]]) -> list[str]:
        """Fields the config does not map. A CRM webhook sends the whole record; these are ignored, and named in
        the response so a typo in a mapped name is still visible."""
        seen = {name for lead in leads for name in lead}
        # A name that is no valid Unicode is named by its escapes: the answer must stay encodable JSON.
        return sorted({n.encode("utf-8", "backslashreplace").decode("utf-8") for n in seen - self.known_fields})

    def score(self, leads: list[dict[str, Any]]) -> dict:
        from serving.routing import first_matching_queue

        state = self.state  # this request's model and snapshot, whatever happens meanwhile
        now = datetime.now(timezone.utc)
        canon = self.canonical(leads, now, state.features.meta.get("decimal"))
        scorer, online = state.scorer, state.features
        if scorer.now_model is not None and self.cfg.data.leads.created_at:
            canon["created_at"], at, _ = online.moments(canon["lead_id"], canon["created_at"])
            columns = online.build(canon, self.cfg, scorer.fit_features)
            columns |= {k: v for k, v in online.build(canon, self.cfg, scorer.now_features, table="now",
                                                      at=at).items() if k not in columns}
        else:
            columns = online.build(canon, self.cfg, scorer.fit_features)
        if self.cfg.segments:
            columns["segment"] = segment_of(canon, self.cfg)
        if "campaign" in canon:  # the campaign outcome factors are looked up by it, as in the batch
            columns.setdefault("campaign", canon["campaign"])
        pred = scorer.predict(columns, self.cfg.scoring.reason_tiers)
        tiers = pred["tier"]
        lc = self.cfg.data.leads
        route = first_matching_queue(tiers, {c: canon[lc.internal_column(c)] for q in self.cfg.routing.queues
                                             for c in q.where}, self.cfg.routing)
        none = np.full(len(tiers), None, dtype=object)
        reasons, fit_reasons = pred.get("reasons", none), pred.get("fit_reasons", none)
        prob, fit = pred["probability"].round(6), pred["fit"].round(6)
        results = [{"lead_id": lid, "probability": float(p), "fit": float(f), "score": int(s), "tier": str(t),
                    "reasons": r if isinstance(r, str) and r else None,
                    "fit_reasons": fr if isinstance(fr, str) and fr else None, "route": str(q), "model_version": v}
                   for lid, p, f, s, t, r, fr, q, v in zip(canon["lead_id"], prob, fit, pred["score"], tiers,
                                                           reasons, fit_reasons, route, pred["model_version"])]
        return {"model_version": state.scorer.model_version, "scored_at": now.isoformat(timespec="seconds"),
                "ignored_fields": self.unmapped(leads), "results": results}


class GuardMiddleware:
    """Plain ASGI (cheaper than Starlette's BaseHTTPMiddleware): body size limit (413), API key on /v1 routes
    (401), a request id, the app's own time in ``Server-Timing``, one JSON access-log line per request, and a
    bare 500 (never a traceback) if anything below fails."""

    def __init__(self, app, max_body: int, api_key: str | None):
        self.app = app
        self.max_body = max_body
        self.api_key = api_key.encode() if api_key else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        headers = dict(scope.get("headers") or [])
        request_id = headers.get(b"x-request-id", b"").decode(errors="replace")[:64] or secrets.token_hex(8)
        status = {"code": None}  # set when the response starts
        path = scope.get("path", "")

        async def reply(code: int, detail: str, extra: list | None = None):
            body = json.dumps({"detail": detail}).encode()
            await send_wrapped({"type": "http.response.start", "status": code, "headers": [
                (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *(extra or [])]})
            await send_wrapped({"type": "http.response.body", "body": body})

        async def send_wrapped(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                elapsed = (time.perf_counter() - started) * 1000
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", request_id.encode()),
                                                  (b"server-timing", f"app;dur={elapsed:.3f}".encode())]}
            await send(message)

        size = headers.get(b"content-length")
        try:
            if size is not None and (not size.isdigit() or int(size) > self.max_body):
                await reply(413, f"request body larger than api.max_body_bytes = {self.max_body} bytes")
            elif path.startswith("/v1/") and self.api_key is not None and not secrets.compare_digest(
                    headers.get(b"x-api-key", b""), self.api_key):
                await reply(401, "missing or wrong API key (header X-API-Key)", [(b"www-authenticate", b"API-Key")])
            elif size is None and scope.get("method") in ("POST", "PUT", "PATCH"):
                # No declared length (a chunked upload): read it here, up to the limit, then hand it on.
                chunks, total = [], 0
                while True:
                    message = await receive()
                    chunks.append(message)
                    if message["type"] != "http.request":
                        break
                    total += len(message.get("body", b""))
                    if total > self.max_body or not message.get("more_body"):
                        break
                if total > self.max_body:
                    await reply(413, f"request body larger than api.max_body_bytes = {self.max_body} bytes")
                else:
                    pending = iter(chunks)

                    async def replay():
                        return next(pending, None) or await receive()

                    await self.app(scope, replay, send_wrapped)
            else:
                await self.app(scope, receive, send_wrapped)
        except Exception as exc:  # never a traceback to the client
            log.error(json.dumps({"event": "error", "request_id": request_id, "path": path, "error": repr(exc)[:500]}))
            if status["code"] is None:
                await reply(500, "internal error")
        log.info(json.dumps({"ts": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                             "request_id": request_id, "method": scope.get("method"), "path": path,
                             "status": status["code"] or 500, "ms": round((time.perf_counter() - started) * 1000, 3),
                             "leads": (scope.get("state") or {}).get("leads"),
                             "client": scope["client"][0] if scope.get("client") else None}))


def _error(i: int, name: str | None, msg: str, kind: str) -> dict:
    """One problem of one lead. A field name that is no valid Unicode is shown with its escapes, so the
    answer itself can be encoded."""
    if isinstance(name, str) and not cells.valid_utf8([name])[0]:
        name, msg = name.encode("utf-8", "backslashreplace").decode("utf-8"), "field name is not valid Unicode"
    return {"loc": ["body", "leads", i, name], "msg": msg, "type": kind}


def is_loopback(host: str) -> bool:
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def create_app(cfg: Config, service: ScoringService | None = None, api_key: str | None = None,
               watch: bool = True):
    """The FastAPI app. ``api_key``: required in ``X-API-Key`` on /v1 routes (None: no key, loopback only,
    which ``serve`` enforces)."""
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from pydantic import BaseModel, ConfigDict, Field

    service = service or ScoringService(cfg)
    if service.state is None:
        service.reload_if_changed()
    max_batch = cfg.api.max_batch

    class ScoreRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        leads: list[dict[str, Any]] = Field(min_length=1, max_length=max_batch, description=(
            "Leads with their fields named as in the CRM export (the config's data.leads mapping); one lead "
            f"or up to {max_batch}. Fields the config does not map are ignored and listed in ignored_fields."))

    class LeadScore(BaseModel):
        lead_id: str
        probability: float = Field(description="Chance of a win in the next label.horizon_days: a new lead at its "
                                               "arrival; a lead the last scoring run knew, from its events up to then")
        fit: float = Field(description="Chance of a win within label.horizon_days of arrival, from what was known then")
        score: int
        tier: str
        reasons: str | None
        fit_reasons: str | None
        route: str
        model_version: str = Field(description="The model that scored it: a version of the global model, or "
                                               "<segment>/<version> for a segment's own model")

    class ScoreResponse(BaseModel):
        model_version: str
        scored_at: str
        ignored_fields: list[str] = Field(description="Fields sent that the config does not map (not used)")
        results: list[LeadScore]

    @asynccontextmanager
    async def lifespan(app):
        if watch:
            service.start_watching()
        yield
        service.stop()

    app = FastAPI(title="leadscore", version="1", lifespan=lifespan,
                  description="Score sales leads the moment they arrive: calibrated probability, score 1-99, "
                              "tier A-D, reasons and the queue, from the champion model.")
    app.state.service = service

    app.add_middleware(GuardMiddleware, max_body=cfg.api.max_body_bytes, api_key=api_key)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in exc.errors()]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception):
        log.error(json.dumps({"event": "error", "path": request.url.path, "error": repr(exc)[:500]}))
        return JSONResponse({"detail": "internal error"}, status_code=500)

    @app.get("/healthz", summary="Liveness")
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz", summary="Readiness: a model and a snapshot are loaded")
    def readyz():
        state = service.state
        if state is None:
            return JSONResponse({"ready": False}, status_code=503)
        return {"ready": True, "model_version": state.scorer.model_version, "loaded_at": state.loaded_at}

    @app.get("/v1/model", summary="The model being served")
    def model_info() -> dict:
        state = service.state
        info = state.model_info
        return {"name": "lead-quality", "version": state.scorer.model_version,
                "trained_at": info.get("created_at"), "metrics": info.get("metrics", {}),
                "features": info.get("features", []), "snapshot_as_of": state.features.meta["as_of"],
                "loaded_at": state.loaded_at,
                "segments": {name: {"version": seg.model_version, "label": seg.label}
                             for name, seg in state.scorer.segments.items()}}

    @app.post("/v1/score", response_model=ScoreResponse, summary="Score one lead or a batch",
              responses={401: {"description": "Missing or wrong API key"}, 413: {"description": "Body too large"},
                         422: {"description": "Invalid leads, with the lead and field of each problem"}})
    async def score(body: ScoreRequest, request: Request):
        request.scope.setdefault("state", {})["leads"] = len(body.leads)
        try:
            # Inline: a few milliseconds of CPU; a thread hop and GIL contention would cost more than they save.
            return JSONResponse(service.score(body.leads))
        except FieldErrors as exc:
            return JSONResponse({"detail": exc.errors}, status_code=422)

    return app


def serve(cfg: Config, host: str, port: int) -> None:
    """Run the API with uvicorn; refuses a non-loopback address without LEADSCORE_API_KEY."""
    import uvicorn

    os.environ.setdefault("OMP_WAIT_POLICY", "passive")  # idle OpenMP threads must not spin between requests
    key = os.environ.get(API_KEY_ENV) or None
    if key is None and not is_loopback(host):
        raise ApiSetupError(f"refusing to listen on {host} without an API key: set {API_KEY_ENV} (clients send it "
                            "in the X-API-Key header), or listen on 127.0.0.1")
    _check_port_free(host, port)
    service = ScoringService(cfg)
    service.reload_if_changed()  # fail now, with a clear message, rather than on the first request
    configure_access_log()
    print(f"serving model version {service.state.scorer.model_version} from {cfg.home} on http://{host}:{port} with "
          f"{cfg.api.workers} worker(s) (docs: http://{host}:{port}/docs)", file=sys.stderr, flush=True)
    options = {"host": host, "port": port, "access_log": False, "log_level": "warning", "http": "httptools",
               "loop": "uvloop"}
    if cfg.api.workers == 1:
        uvicorn.run(create_app(cfg, service, api_key=key), **options)
        return
    # Several processes: each builds its own app from the config file (uvicorn imports the factory).
    service.stop()
    os.environ[_CONFIG_ENV] = str(cfg.source_file)
    os.environ[_HOME_ENV] = str(cfg.home)
    uvicorn.run("serving.api:app_from_environment", factory=True, workers=cfg.api.workers, **options)


def _check_port_free(host: str, port: int) -> None:
    """A port in use is one clear line before anything starts, not a uvicorn error after "serving"."""
    import socket

    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as exc:
        raise ApiSetupError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another --port, or stop "
                            "what is using it") from None


_CONFIG_ENV, _HOME_ENV = "LEADSCORE_SERVE_CONFIG", "LEADSCORE_SERVE_HOME"


def app_from_environment():
    """The app of one worker process, for ``api.workers`` > 1."""
    from leadscore.config import load_config
    from leadscore.runtime import die_with_parent, prepare_environment

    die_with_parent()  # a worker must not outlive `leadscore serve`, even after kill -9
    cfg = load_config(os.environ[_CONFIG_ENV], home=os.environ[_HOME_ENV])
    prepare_environment(cfg.paths)
    configure_access_log()
    return create_app(cfg, api_key=os.environ.get(API_KEY_ENV) or None)


def configure_access_log() -> None:
    """One JSON object per line on stderr, nothing else added."""
    access = logging.getLogger("leadscore.api")
    if not access.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        access.addHandler(handler)
        access.propagate = False
    access.setLevel(logging.INFO)
