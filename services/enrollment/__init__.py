"""Enrollment: the resident registry, number assignment, card applications, the card lifecycle
and residence certificates for convenience-store kiosks.

The only service that stores the 12-digit number, encrypted. Every other service knows a
person by the person reference and the five matching attributes.

Besides the rooms every service has (domain, handlers, store, api, settings, app), two adapters:
- `vault`: the number at rest (AES-GCM under rotating keys, the keyed blind index);
- `certificates`: the PDF renderer of residence certificates (fpdf2, a Japanese font).
"""
