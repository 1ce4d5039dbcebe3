"""Tables and targets: the results dict as markdown, for the terminal and bench/RESULTS.md."""

from __future__ import annotations

from typing import Any

MiB = 2**20


def ms(v: Any) -> str:
    return "—" if v is None else f"{v * 1000:.0f} ms" if v >= 0.1 else f"{v * 1000:.1f} ms"


def secs(v: Any) -> str:
    return "—" if v is None else f"{v:.2f} s"


def mib(v: Any) -> str:
    return "—" if v is None else f"{v / MiB:.1f} MiB"


def pct(v: Any) -> str:
    return "—" if v is None else f"{v:.2f} %"


def get(d: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


def err(d: Any, *path: str) -> str | None:
    """The error recorded for a scenario, shortened, or None."""
    e = get(d, *path, "error")
    return f"error: {e[:80]}" if e else None


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def supervision_table(size: dict[str, Any], names: list[str]) -> str:
    sup = size["supervision"]
    fast = size.get("botvisor_fast", {})

    def row(label: str, fmt: Any, *path: str, botvisor_from_fast: bool = False, only_botvisor: bool = False,
            peer_text: str = "n/a") -> list[str]:
        cells = [label]
        for name in names:
            if only_botvisor and name != "botvisor":
                cells.append(peer_text)
                continue
            src = fast if (botvisor_from_fast and name == "botvisor") else sup.get(name, {})
            cells.append(err(src, path[0]) or fmt(get(src, *path)))
        return cells

    def hang_cell(name: str) -> str:
        if name == "botvisor":
            h = fast.get("hang", {})
            if "error" in h:
                return err(fast, "hang") or "?"
            if h.get("replaced") is None:
                return f"not replaced in {h.get('bound', 0):g} s"
            return f"{secs(h['replaced'])} (detected {secs(h.get('detected'))})"
        h = get(sup, name, "hang") or {}
        if "error" in h:
            return err(sup, name, "hang") or "?"
        if h.get("replaced") is None:
            return f"never detected (waited {h.get('bound', 0):g} s)"
        return secs(h["replaced"])

    killed = get(sup, "botvisor", "mass", "killed")
    rows = [
        row("cold start: all pids", secs, "cold", "all_pids"),
        row("cold start: all hellos", secs, "cold", "all_hellos", only_botvisor=True),
        row("crash → replacement pid, median", ms, "crash", "pid_median"),
        row("crash → replacement pid, p95", ms, "crash", "pid_p95"),
        row("crash → its hello, median", ms, "crash", "hello_median", only_botvisor=True),
        row("crash → its hello, p95", ms, "crash", "hello_p95", only_botvisor=True),
        row(f"mass crash ({killed} at once) → all pids", ms, "mass", "all_pids"),
        row("mass crash → all hellos", ms, "mass", "all_hellos", only_botvisor=True),
        ["hang (SIGSTOP) → replaced"] + [hang_cell(n) for n in names],
        row("idle CPU of the supervisor (30 s heartbeats)", pct, "idle", "cpu_pct"),
        row(f"idle CPU of the supervisor ({fast.get('heartbeat_timeout', 3) / 3:g} s heartbeats)", pct, "idle",
            "cpu_pct", botvisor_from_fast=True, only_botvisor=True, peer_text="same as above (no heartbeats)"),
        row("supervisor RSS", mib, "idle", "rss"),
        row("shutdown (SIGTERM) → everything gone", secs, "shutdown", "gone"),
        row("worker RSS (median)", mib, "memory", "rss"),
        row("worker PSS (median)", mib, "memory", "pss"),
        row("worker USS (median)", mib, "memory", "uss"),
        row("fleet PSS (workers + supervisor)", mib, "memory", "fleet_pss"),
    ]
    missing = [n for n in names if get(sup, n, "crash", "missing")]
    text = table(["N = " + str(size.get("n", "")), *names], rows)
    if missing:
        text += "\n\nReplacements slower than 15 s (left out of the medians): " + ", ".join(
            f"{n} {get(sup, n, 'crash', 'missing')}" for n in missing)
    return text


def sustained(ep: dict[str, Any]) -> dict[str, Any] | None:
    """The best step botvisor kept up with (criterion: eventpath.kept_up, re-applied here so an
    older results file renders the same way)."""
    from .eventpath import kept_up

    for step in ep.get("steps", []):
        step["kept_up"] = kept_up(step)
    good = [s for s in ep.get("steps", []) if s["kept_up"]]
    return max(good, key=lambda s: s["rate"]) if good else None


def no_loss(step: dict[str, Any]) -> bool:
    return step.get("gaps") == 0 and step.get("events_lost") == 0


def event_table(ep: dict[str, Any]) -> str:
    if "error" in ep:
        return f"event path: error: {ep['error']}"
    best, ceiling, lat = sustained(ep) or {}, ep.get("ceiling", {}), ep.get("latency", {})

    def per_event(d: dict[str, Any], key: str) -> str:
        cpu, rate = d.get(key), d.get("rate")
        return f"{cpu / 100 / rate * 1e6:.0f} µs" if cpu and rate else "—"

    def lost(d: dict[str, Any]) -> str:
        return f"{d.get('gaps', '?')} (events_lost {d.get('events_lost', '?')}, tap_dropped {d.get('tap_dropped', '?')})"

    rows = []
    for step in ep.get("steps", []):
        rows.append([f"botvisor, {step['offered']:,.0f}/s offered" + ("" if step["kept_up"] else " (fell behind)"),
                     f"{step['rate']:,.0f}/s", lost(step), pct(step.get("supervisor_cpu_pct")),
                     per_event(step, "supervisor_cpu_pct"), ms(step.get("p50")), ms(step.get("p99"))])
    flat_out = ep.get("flat_out")
    if flat_out and "error" in flat_out:
        rows.append([f"botvisor, {ep.get('n', 'N')} workers flat out", f"error: {flat_out['error']}", "—", "—", "—",
                     "—", "—"])
        flat_out = None
    if flat_out:
        rows.append([f"botvisor, {ep.get('n', 'N')} workers flat out", f"{flat_out['rate']:,.0f}/s", lost(flat_out),
                     pct(flat_out.get("supervisor_cpu_pct")), per_event(flat_out, "supervisor_cpu_pct"),
                     ms(flat_out.get("p50")), ms(flat_out.get("p99"))])
    rows.append([f"bare pyzmq+msgpack relay, {ceiling.get('publisher_processes', '?')} publisher processes flat out",
                 f"{ceiling.get('rate', 0):,.0f}/s", str(ceiling.get("gaps", "?")), pct(ceiling.get("relay_cpu_pct")),
                 per_event(ceiling, "relay_cpu_pct"), ms(ceiling.get("p50")), ms(ceiling.get("p99"))])
    rows.append(["botvisor at 1,000 events/s", f"{lat.get('rate', 0):,.0f}/s", lost(lat),
                 pct(lat.get("supervisor_cpu_pct")), per_event(lat, "supervisor_cpu_pct"), ms(lat.get("p50")),
                 ms(lat.get("p99"))])
    text = table(["path", "delivered", "lost (seq gaps at the tap)", "supervisor (relay) CPU", "its CPU per event",
                  "latency p50", "latency p99"], rows)
    summary = []
    if flat_out and ceiling.get("rate"):
        summary.append(f"Flat out, botvisor relays {flat_out['rate']:,.0f} events/s with "
                       f"{'zero' if no_loss(flat_out) else 'some'} loss: {flat_out['rate'] / ceiling['rate']:.1%} of "
                       f"the bare relay's ceiling on this machine.")
    if best.get("kept_up"):
        summary.append(f"Paced (each worker at a fixed rate, so each event is its own wakeup in its worker), it "
                       f"sustains {best['rate']:,.0f} events/s with zero loss and p99 under 100 ms.")
    if summary:
        text += "\n\n" + " ".join(summary)
    text += ("\n\nPaced steps: the offered rate doubles until botvisor delivers under 95 % of it, loses an event or "
             "builds a backlog (p99 latency over 100 ms). Flat out: every worker's simulated message_rate at its "
             "maximum, as the relay's publishers send; its latencies, like the relay's, are queueing time at "
             "overload, not the path's latency.")
    return text


def profile_text(prof: dict[str, Any] | None, what: str) -> str:
    if not prof or "self" not in prof:
        return ""
    lines = [f"py-spy, {prof['samples']} busy samples of the supervisor {what}:", "", "```"]
    lines += [f"{p:5.1f}% self  {name}" for name, p in prof["self"]]
    lines += [f"{p:5.1f}% incl  {name}" for name, p in prof["inclusive"] if "runpy" not in name]
    lines.append("```")
    return "\n".join(lines)


def targets(results: dict[str, Any]) -> list[list[str]]:
    """(target, measured, ratio, PASS/MISS) for each of the issue's targets."""
    rows: list[list[str]] = []
    sizes = results["sizes"]
    big = max(sizes, key=int) if sizes else None
    startup = results.get("interpreter_startup")

    def verdict(ok: bool | None) -> str:
        return "n/a" if ok is None else ("PASS" if ok else "**MISS**")

    for n, size in sorted(sizes.items(), key=lambda kv: int(kv[0])):
        sup = size["supervision"]
        bv = get(sup, "botvisor", "crash", "pid_median")
        peer_medians = {k: get(v, "crash", "pid_median") for k, v in sup.items() if k != "botvisor"}
        peer_medians = {k: v for k, v in peer_medians.items() if v is not None}
        rows.append([f"N={n} crash → replacement pid, median < 50 ms", ms(bv), f"{bv / 0.05:.2f} of the limit" if bv
                     else "—", verdict(None if bv is None else bv < 0.05)])
        if peer_medians and bv:
            fastest = min(peer_medians, key=peer_medians.get)  # type: ignore[arg-type]
            speedup = peer_medians[fastest] / bv
            rows.append([f"N={n} crash: ≥ 20x faster than the faster peer", f"{fastest} {ms(peer_medians[fastest])}",
                         f"{speedup:.0f}x", verdict(speedup >= 20)])
        hello = get(sup, "botvisor", "crash", "hello_median")
        if hello is not None and startup:
            rows.append([f"N={n} crash → hello within interpreter start-up ({ms(startup)}) + 50 ms", ms(hello),
                         f"{hello / (startup + 0.05):.2f} of the limit", verdict(hello <= startup + 0.05)])
        fast = size.get("botvisor_fast", {})
        replaced = get(fast, "hang", "replaced")
        limit = fast.get("heartbeat_timeout", 3.0) + 0.5
        rows.append([f"N={n} hang replaced within heartbeat_timeout + 0.5 s ({limit:g} s)", secs(replaced),
                     f"{replaced / limit:.2f} of the limit" if replaced else "—",
                     verdict(None if replaced is None and "hang" not in fast else bool(replaced and replaced <= limit))])
        ep = size.get("event_path", {})
        best, ceiling = sustained(ep) if isinstance(ep, dict) and "steps" in ep else None, get(ep, "ceiling", "rate")
        flat_out = get(ep, "flat_out")
        if ceiling and flat_out and "error" not in flat_out:
            rate = flat_out["rate"] if no_loss(flat_out) else 0.0
            rows.append([f"N={n} event path ≥ 50 % of the bare relay, zero loss (both flat out)",
                         f"{flat_out['rate']:,.0f}/s, {flat_out['gaps']} lost, vs {ceiling:,.0f}/s",
                         f"{rate / ceiling:.1%}", verdict(rate / ceiling >= 0.5)])
        elif ceiling and isinstance(ep, dict) and "steps" in ep:  # results from before the flat-out run
            rate = best["rate"] if best else 0.0
            rows.append([f"N={n} event path ≥ 50 % of the bare relay, zero loss",
                         f"{rate:,.0f}/s sustained vs {ceiling:,.0f}/s", f"{rate / ceiling:.1%}",
                         verdict(rate / ceiling >= 0.5)])
        p99 = get(ep, "latency", "p99")
        if p99 is not None:
            rows.append([f"N={n} latency p99 < 5 ms at 1,000 events/s", ms(p99), f"{p99 / 0.005:.2f} of the limit",
                         verdict(p99 < 0.005)])
        rss = get(sup, "botvisor", "memory", "rss")
        if rss is not None:
            rows.append([f"N={n} simulated worker < 25 MB RSS", mib(rss), f"{rss / 25e6:.2f} of the limit",
                         verdict(rss < 25e6)])
        if n == big:
            all_hellos = get(sup, "botvisor", "cold", "all_hellos")
            peer_cold = {k: get(v, "cold", "all_pids") for k, v in sup.items() if k != "botvisor"}
            peer_cold = {k: v for k, v in peer_cold.items() if v is not None}
            if all_hellos is not None and peer_cold:
                fastest = min(peer_cold, key=peer_cold.get)  # type: ignore[arg-type]
                half = peer_cold[fastest] / 2
                rows.append([f"N={n} cold start: all hellos within half the faster peer's all pids",
                             f"{secs(all_hellos)} vs {fastest} {secs(peer_cold[fastest])}",
                             f"{all_hellos / half:.2f} of the limit", verdict(all_hellos <= half)])
            for label, path, limit in (("30 s heartbeats < 0.2 %", ("supervision", "botvisor", "idle", "cpu_pct"), 0.2),
                                       ("fast heartbeats < 2 %", ("botvisor_fast", "idle", "cpu_pct"), 2.0)):
                cpu = get(size, *path)
                if cpu is not None:
                    rows.append([f"N={n} idle CPU, {label}", pct(cpu), f"{cpu / limit:.2f} of the limit",
                                 verdict(cpu < limit)])
    neo = results.get("neonize", {})
    uss = get(neo, "fleet", "memory", "uss")
    ref = get(neo, "reference", "uss")
    rows.append(["neonize worker < 30 MB USS (plain neonize process: " + mib(ref) + " USS)",
                 mib(uss) if uss is not None else get(neo, "fleet", "skipped") or get(neo, "fleet", "error") or "—",
                 f"{uss / 30e6:.2f} of the limit" if uss else "—", verdict(None if uss is None else uss < 30e6)])
    cold = get(neo, "fleet", "cold", "all_hellos")
    dialled = get(neo, "fleet", "cold", "all_dialled")
    rows.append([f"neonize cold start: {results['options'].get('neonize_n') or big} bots at hello within 10 s",
                 (secs(cold) + (f" (every worker's neonize loaded and dialled: {secs(dialled)})" if dialled else ""))
                 if cold is not None else get(neo, "fleet", "skipped") or "—",
                 f"{cold / 10:.2f} of the limit" if cold else "—", verdict(None if cold is None else cold <= 10)])
    return rows


def render(results: dict[str, Any], notes: str = "") -> str:
    m = results["machine"]
    o = results["options"]
    peers = ", ".join(f"{k} {v}" for k, v in m.get("peers", {}).items()) or "not installed"
    out = [
        "# botvisor benchmarks: results",
        "",
        "Generated by `python -m bench` (bench/README.md); every number below was measured in this one run.",
        "",
        "## Machine",
        "",
        f"- {m['date']}; {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB; {m['os']}",
        f"- Python {m['python']}, pyzmq {m['pyzmq']}, msgpack {m['msgpack']}; peers: {peers}",
        f"- botvisor commit {m['botvisor_commit']}",
        f"- load average at start {m['load_at_start']}, at end {m.get('load_at_end')}; "
        f"interpreter start-up (`python -c pass`) {ms(results.get('interpreter_startup'))}",
        f"- run took {results.get('elapsed', 0):.0f} s; options: kills={o['kills']}, idle={o['idle']:g} s, "
        f"event window={o['event_seconds']:g} s, seed={o['seed']}",
        "",
    ]
    if notes:
        out += [notes, ""]
    if results.get("peers") != "ok":
        out += [f"Peers were not measured: {results.get('peers')}", ""]
    out += ["## Targets", "", table(["target", "measured", "ratio", "result"], targets(results)), ""]
    for n, size in sorted(results["sizes"].items(), key=lambda kv: int(kv[0])):
        size = dict(size, n=n)
        names = list(size["supervision"])
        out += [f"## N = {n}", "", "Settings: " + "; ".join(f"**{k}**: {v}" for k, v in size["settings"].items()), "",
                supervision_table(size, names), "", f"### Event path, N = {n}", "",
                event_table(dict(size.get("event_path", {}), n=n)), ""]
        limit = get(size, "event_path", "limit") or {}
        flat_out = get(size, "event_path", "flat_out") or {}
        for prof in (profile_text(limit.get("profile"), f"at {limit.get('offered', 0):,.0f} events/s offered"),
                     profile_text(flat_out.get("profile"), "with every worker flat out"),
                     profile_text(get(size, "botvisor_fast", "idle_profile"),
                                  "idle with fast heartbeats (200 Hz, only samples where it was running)")):
            if prof:
                out += [prof, ""]
    if results.get("codec"):
        out += ["## One event's cost in the protocol code (µs per call, this process, best of 5)", "",
                table(["step", "µs"], [[k, f"{v:.1f}"] for k, v in results["codec"].items()]), ""]
    neo = results.get("neonize", {})
    out += ["## neonize", "", table(["process", "RSS", "PSS", "USS"], [
        ["plain `import neonize.client` + failed dial", mib(get(neo, "reference", "rss")),
         mib(get(neo, "reference", "pss")), mib(get(neo, "reference", "uss"))],
        ["botvisor neonize worker after its failed dial (median)", mib(get(neo, "fleet", "memory", "rss")),
         mib(get(neo, "fleet", "memory", "pss")), mib(get(neo, "fleet", "memory", "uss"))],
    ]), ""]
    if get(neo, "fleet", "skipped"):
        out += [f"botvisor's neonize worker was not measured: {neo['fleet']['skipped']}.", ""]
    if results.get("apps") and "error" not in results["apps"]:
        from .apps import render as render_apps

        out += [render_apps(results["apps"]), ""]
    if results.get("errors"):
        out += ["## Errors during the run", ""] + [f"- {e}" for e in results["errors"]] + [""]
    return "\n".join(out)
