"""Names for simulated customers and agents, per language, so notifications read naturally."""

from __future__ import annotations

__all__ = ["COUNTRY_CODES", "EMAIL_DOMAINS", "FIRST_NAMES", "LAST_NAMES"]

FIRST_NAMES: dict[str, tuple[str, ...]] = {
    "en": ("Anna", "James", "Olivia", "Liam", "Emma", "Noah", "Grace", "Oliver", "Sophie", "Jack"),
    "ru": (
        "Anna",
        "Ivan",
        "Olga",
        "Dmitry",
        "Elena",
        "Sergey",
        "Maria",
        "Alexei",
        "Irina",
        "Pavel",
    ),
    "pl": (
        "Anna",
        "Piotr",
        "Katarzyna",
        "Tomasz",
        "Agnieszka",
        "Marek",
        "Zofia",
        "Jakub",
        "Ewa",
        "Pawel",
    ),
}

LAST_NAMES: dict[str, tuple[str, ...]] = {
    "en": ("Smith", "Jones", "Taylor", "Brown", "Wilson", "Evans", "Walker", "Wright"),
    "ru": ("Ivanova", "Petrov", "Smirnova", "Kuznetsov", "Popova", "Sokolov", "Lebedeva", "Volkov"),
    "pl": (
        "Nowak",
        "Kowalski",
        "Wisniewska",
        "Wojcik",
        "Kaminska",
        "Lewandowski",
        "Zielinska",
        "Szymanski",
    ),
}

#: E.164 country calling codes, so phone numbers look like the customer's country.
COUNTRY_CODES: dict[str, str] = {"en": "44", "ru": "7", "pl": "48"}

#: Reserved documentation domains (RFC 2606): simulated addresses never reach a real inbox.
EMAIL_DOMAINS: tuple[str, ...] = ("example.com", "example.org", "example.net")
