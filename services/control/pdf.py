"""The minutes of a control session as PDF (fpdf2, pure Python; core fonts only, so the
text is set in Latin-1 and anything else is replaced by '?')."""

from __future__ import annotations

from typing import Any

from fpdf import FPDF
from fpdf.enums import XPos, YPos

_SUBSTITUTES = {"×": "x", "—": "-", "–": "-", "’": "'", "“": '"', "”": '"', "…": "...", "≠": "!=", "§": "§"}


def _latin1(text: object) -> str:
    s = "" if text is None else str(text)
    s = "".join(_SUBSTITUTES.get(ch, ch) for ch in s)
    return s.encode("latin-1", "replace").decode("latin-1")


def _francs(n: object) -> str:
    return f"{n:,}".replace(",", " ") + " F" if isinstance(n, int) else "-"


class _Minutes(FPDF):
    def __init__(self, seal: str) -> None:
        super().__init__(orientation="P", unit="mm", format="A4")
        self.seal = seal
        self.set_auto_page_break(auto=True, margin=18)

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font("Helvetica", size=7)
        self.cell(0, 5, _latin1(f"{self.seal}   page {self.page_no()}/{{nb}}"), align="C")


def minutes_pdf(doc: dict[str, Any]) -> bytes:
    """`doc` is what the API serves: `{"minutes", "seal"}` (seal None: an open session's draft)."""
    minutes, seal = doc["minutes"], doc.get("seal")
    session = minutes["session"]
    seal_line = f"SHA-256 {seal['sha256']}" if seal else "DRAFT - session still open, not sealed"
    pdf = _Minutes(seal_line)
    pdf.alias_nb_pages()
    pdf.add_page()
    line: dict[str, Any] = {"new_x": XPos.LMARGIN, "new_y": YPos.NEXT}

    pdf.set_font("Helvetica", "B", 15)
    pdf.cell(0, 9, _latin1("Commission de contrôle des liquidations - procès-verbal"), **line)
    pdf.set_font("Helvetica", size=10)
    who = session.get("controller_label") or session["controller"]
    pdf.cell(0, 6, _latin1(f"Session {session['id']}, opened by {who} ({session['controller']})"), **line)
    pdf.cell(0, 6, _latin1(f"Opened {session['opened_at']}   closed {session['closed_at'] or '-'}"), **line)
    pdf.ln(3)

    pdf.set_font("Helvetica", "B", 11)
    pdf.cell(0, 7, "Totals", **line)
    pdf.set_font("Helvetica", size=9)
    for name, value in minutes["totals"].items():
        shown = _francs(value) if name in ("monthly_pensions_approved", "lump_sums_approved") else value
        pdf.cell(70, 5, _latin1(name.replace("_", " ")))
        pdf.cell(0, 5, _latin1(shown), **line)
    pdf.ln(3)

    pdf.set_font("Helvetica", "B", 11)
    pdf.cell(0, 7, _latin1(f"Liquidations reviewed ({len(minutes['liquidations'])})"), **line)
    for item in minutes["liquidations"]:
        pdf.set_font("Helvetica", "B", 9)
        amount = (
            _francs(item["monthly_pension"]) + "/month"
            if item["outcome"] == "pension"
            else (_francs(item["lump_sum"]) + " lump sum" if item["outcome"] == "lump_sum" else "no amount")
        )
        title = (
            f"{item['claim_id']} - worker {item['worker_id']} ({item['regime']}) - {item['outcome']}, "
            f"{amount} - {item['status'].upper()}"
        )
        pdf.multi_cell(0, 5, _latin1(title), **line)
        pdf.set_font("Helvetica", size=8)
        flags = item["flags"]
        if not flags:
            pdf.multi_cell(0, 4.5, "  Flags: none", **line)
        for f in flags:
            pdf.multi_cell(0, 4.5, _latin1(f"  Flag {f['code']}: {f['message']}"), **line)
        if not item["decisions"]:
            decided = item["decided_by"] or "no decision yet"
            pdf.multi_cell(0, 4.5, _latin1(f"  Decisions: none ({decided})"), **line)
        for d in item["decisions"]:
            who = d["controller_label"] or d["controller"]
            text = f"  {d['decision'].upper()} by {who} ({d['controller']}) at {d['decided_at']}"
            if not d["in_this_session"]:
                text += " (outside this session)"
            if d["reason"]:
                text += f" - reason: {d['reason']}"
            pdf.multi_cell(0, 4.5, _latin1(text), **line)
        pdf.ln(1.5)

    pdf.ln(3)
    pdf.set_font("Helvetica", "B", 9)
    pdf.cell(0, 5, "Seal", **line)
    pdf.set_font("Courier", size=8)
    if seal:
        pdf.multi_cell(0, 4, _latin1(f"SHA-256 of the canonical JSON ({seal['canonical']}):"), **line)
        pdf.multi_cell(0, 4, seal["sha256"], **line)
        pdf.multi_cell(
            0, 4, _latin1(f"Audit log tree head: {seal['audit_tree_head'] or 'not yet recorded'}"), **line
        )
    else:
        pdf.multi_cell(0, 4, "Not sealed: the session is still open.", **line)
    return bytes(pdf.output())
