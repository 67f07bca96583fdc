"""Renders a residence certificate as a PDF (fpdf2) in a font that shows Japanese.

Each render builds its own document from its own `ResidenceCertificate`: nothing is shared
between requests in flight. Rendering runs in a worker thread; a caller that gives up on it
(a timeout) simply never uses the result.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Protocol
from zoneinfo import ZoneInfo

from fpdf import FPDF
from mynumber_contracts.enrollment import CertificateDocument

from .domain import ResidenceCertificate

DEFAULT_FONT = Path("/usr/share/fonts/opentype/ipafont-gothic/ipag.ttf")
_JST = ZoneInfo("Asia/Tokyo")
_TITLES = {
    CertificateDocument.residence_certificate: "住民票の写し（個人） Certificate of Residence",
    CertificateDocument.residence_certificate_with_household: "住民票の写し（世帯全員） Certificate of Residence (household)",
}
_SEX = {"male": "男 male", "female": "女 female"}


class CertificateRenderer(Protocol):
    async def render(self, certificate: ResidenceCertificate) -> bytes: ...


class PdfCertificateRenderer:
    def __init__(self, font_path: Path = DEFAULT_FONT) -> None:
        self.font_path = font_path

    async def render(self, certificate: ResidenceCertificate) -> bytes:
        return await asyncio.to_thread(self.render_now, certificate)

    def render_now(self, certificate: ResidenceCertificate) -> bytes:
        if not self.font_path.exists():
            raise FileNotFoundError(f"the Japanese font {self.font_path} is missing (apt-get install fonts-ipafont-gothic)")
        pdf = FPDF(format="A4")
        pdf.set_title(_TITLES[certificate.document])
        pdf.add_font("jp", fname=str(self.font_path))
        pdf.add_page()
        pdf.set_font("jp", size=16)
        pdf.cell(0, 12, _TITLES[certificate.document], new_x="LMARGIN", new_y="NEXT", align="C")
        pdf.set_font("jp", size=10)
        pdf.cell(0, 7, f"発行自治体 Issuing municipality: {certificate.municipality_code}", new_x="LMARGIN", new_y="NEXT")
        pdf.ln(3)
        for index, person in enumerate(certificate.people):
            pdf.set_font("jp", size=12)
            role = "本人 Applicant" if index == 0 else f"世帯員 Household member {index}"
            pdf.cell(0, 8, role, new_x="LMARGIN", new_y="NEXT")
            pdf.set_font("jp", size=11)
            for label, value in (
                ("氏名 Name", person.name_kanji),
                ("フリガナ Kana", person.name_kana),
                ("生年月日 Date of birth", person.date_of_birth.isoformat()),
                ("性別 Sex", _SEX[person.sex.value]),
                ("住所 Address", person.address),
            ):
                pdf.cell(55, 7, label)
                pdf.cell(0, 7, value, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(2)
        pdf.ln(4)
        pdf.set_font("jp", size=10)
        issued = certificate.issued_at.astimezone(_JST).strftime("%Y-%m-%d %H:%M:%S JST")
        for line in (
            f"発行日時 Issued at: {issued}",
            f"照合番号 Verification code: {certificate.verification_code}",
            "照合先 Verify at: GET /certificates/verification/{code}",
            f"交付端末 Kiosk: {certificate.kiosk_id}    受付番号 Request: {certificate.request_id}",
            "この写しは住民基本台帳の原本と相違ないことを証明する。 This copy matches the resident register.",
        ):
            pdf.cell(0, 6, line, new_x="LMARGIN", new_y="NEXT")
        return bytes(pdf.output())
