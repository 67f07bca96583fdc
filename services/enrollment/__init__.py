"""Enrollment: the resident registry, card applications and the card lifecycle.

The only service that stores the 12-digit number, encrypted (see `vault`). Every other
service knows a person by the person reference and the five matching attributes.
"""
