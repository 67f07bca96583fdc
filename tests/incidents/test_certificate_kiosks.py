"""Incidents (facts §7): people received other people's residence certificates at convenience
stores. In one city a print job timed out under load and the timeout handler released only part
of a lock, so the next applicant's document was printed; in another, two requests less than a
second apart at two shops overwrote each other.

Replayed end to end with two enrollment instances in one consumer group: two people have cards;
at the same instant two kiosks of different chains ask for a certificate, each for its own
holder, and both kiosks number their requests the same way ("0001"). The first kiosk's print
job hangs past the service's timeout in the middle of the issuance. The first holder then tries
again. Each kiosk may pick up only its own document; no document holds the other person's data.
"""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pytest
from mynumber_contracts import Sex, topics
from mynumber_contracts.enrollment import ApplyForCard, CertificateDocument, Channel, RequestResidenceCertificate

from services.enrollment.certificates import DEFAULT_FONT, PdfCertificateRenderer
from services.enrollment.domain import ResidenceCertificate
from tests.incidents.support import MUNICIPAL_OFFICE, TODAY, a_number, person, running_platform

SEVEN, LAWSON = "seven-chiyoda-0001", "lawson-kanda-0002"
TOKENS = ",".join(["operator=development-only-operator-token",
                   f"kiosk/{SEVEN}=kiosk-token-seven-000001", f"kiosk/{LAWSON}=kiosk-token-lawson-00002"])
AS = {SEVEN: {"Authorization": "Bearer kiosk-token-seven-000001"},
      LAWSON: {"Authorization": "Bearer kiosk-token-lawson-00002"}}
ISSUED = "jp.mynumber.enrollment.residence_certificate_issued.v1"
REFUSED = "jp.mynumber.enrollment.residence_certificate_refused.v1"


@dataclass
class PrinterJamsOnce:
    """The real renderer, except that the first job of one kiosk hangs (a print job stuck under load)."""

    kiosk: str
    jammed: list[str] = field(default_factory=list)
    inner: PdfCertificateRenderer = field(default_factory=PdfCertificateRenderer)

    async def render(self, certificate: ResidenceCertificate) -> bytes:
        if certificate.kiosk_id == self.kiosk and not self.jammed:
            self.jammed.append(certificate.request_id)
            await asyncio.sleep(3600)
        return await self.inner.render(certificate)


def pdf_text(pdf: bytes, tmp: Path) -> str:
    path = tmp / f"{uuid.uuid4().hex}.pdf"
    path.write_bytes(pdf)
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True).stdout


@pytest.mark.skipif(not DEFAULT_FONT.exists(), reason="the Japanese font for certificates is not installed")
async def test_two_kiosks_at_the_same_instant_one_timing_out_neither_gets_the_others_certificate(
        servers, settings_for, namespace, tmp_path):
    printer = PrinterJamsOnce(kiosk=SEVEN)
    settings = {"http_api_tokens": TOKENS, "certificate_render_timeout_seconds": 2.0}
    holders = {SEVEN: ("高橋 美咲", "タカハシ ミサキ", a_number(40200000001)),
               LAWSON: ("田中 陽菜", "タナカ ヒナ", a_number(40200000002))}
    async with running_platform(servers, settings_for, namespace, {"enrollment": 2},
                                overrides={"enrollment": settings},
                                doubles={"enrollment": {"certificate_renderer": printer}}) as platform:
        certificate_ids = {}
        for kiosk, (kanji, kana, number) in holders.items():
            await platform.register(number, person(kanji, kana, sex=Sex.female, born=date(1991, 8, 8),
                                                   address="東京都千代田区神田1-2-3"), request_id=f"reg-{kiosk}")
            await platform.send(ApplyForCard(application_id=f"app-{kiosk}", channel=Channel.municipal_office,
                                             office_id=MUNICIPAL_OFFICE, my_number=number.reveal(), applied_on=TODAY,
                                             photo_ref=f"photo/{kiosk}"), source=MUNICIPAL_OFFICE, subject=number.reveal())
            issued = await platform.fact("enrollment", "jp.mynumber.enrollment.card_issued.v1", person_ref=platform.ref(number))
            certificate_ids[kiosk] = issued[0]["certificate_id"]

        def request(kiosk: str, request_id: str) -> RequestResidenceCertificate:
            return RequestResidenceCertificate(kiosk_id=kiosk, request_id=request_id, certificate_id=certificate_ids[kiosk],
                                               pin_verified=True, document=CertificateDocument.residence_certificate)

        # The same request number at both shops, sent at the same instant, on different partitions.
        requests = [request(SEVEN, "0001"), request(LAWSON, "0001")]
        records = [platform.partner.record(r, subject=f"{r.kiosk_id}/{r.request_id}", source=f"kiosk/{r.kiosk_id}")
                   for r in requests]
        topic = topics.for_service("enrollment", namespace).requests
        await asyncio.gather(*(platform.partner._producer.send_and_wait(topic, rec.value, key=rec.key, headers=rec.headers,
                                                                         partition=p)
                               for rec, p in zip(records, (0, 3), strict=True)))
        answers = {f["kiosk_id"]: f for f in await platform.fact("enrollment", ISSUED, 1, request_id="0001")}
        answers |= {f["kiosk_id"]: f | {"refused": True} for f in await platform.fact("enrollment", REFUSED, 1, request_id="0001")}
        # The first holder tries again at the same kiosk.
        await platform.send(request(SEVEN, "0002"), source=f"kiosk/{SEVEN}", subject=f"{SEVEN}/0002")
        retry = (await platform.fact("enrollment", ISSUED, 1, request_id="0002"))[0]

        http = platform.service("enrollment").http
        lawson_pdf = await http.get(f"/kiosks/{LAWSON}/certificates/0001", headers=AS[LAWSON])
        seven_jammed = await http.get(f"/kiosks/{SEVEN}/certificates/0001", headers=AS[SEVEN])
        seven_retry = await http.get(retry["pickup_path"], headers=AS[SEVEN])
        seven_takes_lawsons = await http.get(f"/kiosks/{LAWSON}/certificates/0001", headers=AS[SEVEN])

    assert printer.jammed == ["0001"], "the first kiosk's job hung in the middle of the issuance"
    assert answers[SEVEN].get("refused") and answers[SEVEN]["reason"] == "timed_out"
    assert answers[LAWSON]["kiosk_id"] == LAWSON and not answers[LAWSON].get("refused")
    assert seven_jammed.status_code == 404, "a timed-out issuance leaves no document behind"
    assert seven_takes_lawsons.status_code == 403, "a kiosk cannot pick up another kiosk's document"
    assert lawson_pdf.status_code == 200 and seven_retry.status_code == 200
    lawson_text, seven_text = pdf_text(lawson_pdf.content, tmp_path), pdf_text(seven_retry.content, tmp_path)
    assert holders[LAWSON][0] in lawson_text and holders[SEVEN][0] not in lawson_text
    assert holders[SEVEN][0] in seven_text and holders[LAWSON][0] not in seven_text
    assert f"Kiosk: {LAWSON}" in lawson_text and f"Kiosk: {SEVEN}" in seven_text
    for _kanji, _kana, number in holders.values():
        assert number.reveal() not in lawson_text + seven_text, "the number is never printed"
