"""`provider` output: a short human report (the diff first, when there is one), or one JSON document."""

from __future__ import annotations

import sys
from typing import Any

from echopanel_setup import output, ui
from echopanel_setup.provider.command import OUR_VARIANTS, ProviderResult

SCHEMA_VERSION = 1
_OURS = {
    "voxtral_official": "echopanel-setup's realtime provider (vLLM /v1/realtime)",
    "voxtral_realtime": "echopanel-setup's voxtral_realtime (voxtral.c, one resident process per source)",
}
_DONE = {
    "fixed": "replaced with {ours}",
    "already": "already {ours}",
    "dry-run": "dry run: nothing written",
    "reverted": "the original provider is back",
    "restored": "the original was put back",
}


def to_document(r: ProviderResult) -> dict[str, Any]:
    load = r.load
    return output.document(
        f"provider {r.action}",
        SCHEMA_VERSION,
        r.exit_code,
        provider=r.provider,
        outcome=r.outcome,
        checkout={"path": str(r.checkout), "found_by": r.how_found},
        file=str(r.file),
        variant={"id": r.variant, "title": r.variant_title, "works": r.works},
        reason=r.reason or None,
        facts=r.facts,
        diff=r.diff or None,
        orig=None if r.orig is None else {"path": str(r.orig), "created": r.orig_created},
        record=None if r.record is None else r.record.__dict__,
        load=None
        if load is None
        else {
            "python": load.python,
            "ran": load.ran,
            "ok": load.ok,
            "available": load.available,
            "seconds": round(load.seconds, 3),
            "message": load.message or None,
        },
        smoke=None if r.smoke is None else _smoke_summary(r.smoke),
        notes=r.notes,
        warnings=r.warnings,
    )


def _smoke_summary(run: Any) -> dict[str, Any]:
    return {
        "url": run.url,
        "how": run.mode,
        "passed": run.passed,
        "verdict": run.verdict,
        "transcript": run.transcript,
        "server_works": run.server_works,
    }


def show_diff(r: ProviderResult) -> None:
    """The diff, before the question (on stdout, so it can be paged or saved)."""
    if r.diff:
        sys.stdout.write(r.diff if r.diff.endswith("\n") else r.diff + "\n")
        sys.stdout.flush()


def render_human(r: ProviderResult) -> None:
    out = ui.plain(sys.stdout)  # EchoPanel's import errors and the server's words are text from outside
    rel = r.file.relative_to(r.checkout) if r.file.is_relative_to(r.checkout) else r.file
    print(f"EchoPanel checkout {r.checkout} ({r.how_found})", file=out)
    what = r.variant_title or ("not a version echopanel-setup knows" if r.file.exists() else "missing")
    print(f"{rel}: {what}", file=out)
    if r.action == "check" and r.facts:
        f = r.facts
        reads = ", ".join(f"{k}" + (f"={v}" if v else "") for k, v in f.get("reads", {}).items()) or "nothing"
        print(f"  reads {reads}", file=out)
        needs = ", ".join(f.get("deps", [])) or "the standard library"
        calls = [f"calls {', '.join(f['endpoints'])}"] if f.get("endpoints") else []
        model = [f"model {f['model']}"] if f.get("model") else []
        print(f"  {'; '.join([*calls, *model, f'needs {needs}'])}", file=out)
    if r.load is not None:
        load = r.load
        if not load.ran:
            print(f"  ! not loaded: {load.message}", file=out)
        elif load.ok:
            avail = "" if load.available is not False else " but reports itself unavailable"
            print(f"  loads in EchoPanel's Python ({load.python}, {load.seconds:.1f} s){avail}", file=out)
        else:
            print(f"  x does not load in EchoPanel's Python ({load.python}): {load.message}", file=out)
    if r.smoke is not None:
        how = "ran its own code" if r.smoke.mode == "run" else "replayed its protocol"
        print(f"  against {r.smoke.url} ({how}, bundled clip): {r.smoke.verdict}", file=out)
        if r.smoke.server_works is False and r.smoke.server_detail:  # not the provider's fault alone: say why
            alone = "voxtral.c alone" if r.provider == "voxtral_realtime" else "a realtime client"
            print(f"  {alone} fails too: {r.smoke.server_detail}", file=out)
    if r.outcome in _DONE:
        print(("ok " if r.exit_code == 0 else "x ") + _DONE[r.outcome].format(ours=_OURS[r.provider]), file=out)
    if r.orig is not None and r.outcome == "fixed":
        print(f"  original kept as {r.orig.name}" + ("" if r.orig_created else " (from the first fix)"), file=out)
    for note in r.notes:
        print(f"  {note}", file=out)
    for warning in r.warnings:
        print(f"! {warning}", file=out)
    if r.reason and (r.exit_code or r.action == "check"):
        print(f"{'x' if r.exit_code else '!'} {r.reason}", file=out)
    elif r.reason and r.outcome == "dry-run":
        print(f"  why: {r.reason}", file=out)
    if r.action == "check":
        verdict = "can work" if r.exit_code == 0 else "cannot work"
        flag = "" if r.provider == "voxtral_official" else f" --provider {r.provider}"
        hint = (
            ""
            if r.exit_code == 0 or r.variant == OUR_VARIANTS[r.provider]
            else f": `echopanel-setup provider fix{flag}` replaces it"
        )
        print(f"{'ok' if r.exit_code == 0 else 'x'} EchoPanel's {r.provider} {verdict}{hint}", file=out)
