"""The insurance service: the card as the health insurance card, eligibility certificates and medical data."""
