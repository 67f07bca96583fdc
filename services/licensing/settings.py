"""Licensing settings: the fee table (facts, section 6) and the HTTP port."""

from __future__ import annotations

from mynumber_contracts.licensing import HolderChoice
from pydantic import Field

from services.kit.settings import ServiceSettings

from .domain import FeeTable


class LicensingSettings(ServiceSettings):
    """Fees in yen; each is one variable, e.g. `MYNUMBER_FEE_RENEWAL_CARD_ONLY_YEN`."""

    http_port: int = Field(8004, description="Port the HTTP API listens on.")

    fee_renewal_card_only_yen: int = Field(2100, ge=0, description="Renewal, licence on the card only (facts, section 6).")
    fee_renewal_conventional_only_yen: int = Field(2850, ge=0, description="Renewal, conventional licence only.")
    fee_renewal_both_yen: int = Field(2950, ge=0, description="Renewal, both the card and a conventional licence.")
    # New licences: the issue fee after the test is passed (the test fees are charged elsewhere).
    fee_new_card_only_yen: int = Field(1550, ge=0, description="New licence, on the card only.")
    fee_new_conventional_only_yen: int = Field(2350, ge=0, description="New licence, conventional licence only.")
    fee_new_both_yen: int = Field(2450, ge=0, description="New licence, both forms.")
    fee_re_recording_yen: int = Field(
        0, ge=0, description="Recording a still-valid licence on a reissued card; the facts give no amount."
    )

    def fee_table(self) -> FeeTable:
        return FeeTable(
            new={
                HolderChoice.card_only: self.fee_new_card_only_yen,
                HolderChoice.conventional_only: self.fee_new_conventional_only_yen,
                HolderChoice.both: self.fee_new_both_yen,
            },
            renewal={
                HolderChoice.card_only: self.fee_renewal_card_only_yen,
                HolderChoice.conventional_only: self.fee_renewal_conventional_only_yen,
                HolderChoice.both: self.fee_renewal_both_yen,
            },
            re_recording=self.fee_re_recording_yen,
        )
