"""The deploy files name only settings the bot reads, and run the commands the tests run."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

from bot.settings import Settings

DEPLOY = Path(__file__).parent.parent / "deploy"
SETTINGS = {field.name.upper() for field in fields(Settings)}
# Read by compose and Caddy themselves, not by the bot.
OUTSIDE = {"BOT_DOMAIN", "POSTGRES_PASSWORD", "POSTGRES_USER", "POSTGRES_DB"}


def test_every_variable_in_the_deploy_files_is_a_setting() -> None:
    compose = (DEPLOY / "compose.yaml").read_text()
    named = set(re.findall(r"^\s+([A-Z][A-Z0-9_]+):", compose, re.MULTILINE))
    named |= set(re.findall(r"^([A-Z][A-Z0-9_]+)=", (DEPLOY / "env.example").read_text(), re.M))
    unit = (DEPLOY / "coffeebot.service").read_text()
    named |= set(re.findall(r"^Environment=([A-Z][A-Z0-9_]+)=", unit, re.MULTILINE))
    assert named - OUTSIDE <= SETTINGS, named - OUTSIDE - SETTINGS
    assert {"WEBHOOK_SECRET", "TELEGRAM_BOT_TOKEN", "WEBHOOK_LISTEN", "PUBLIC_URL"} <= named


def test_replicas_serve_the_webhook_and_nothing_registers_it_at_start() -> None:
    compose = (DEPLOY / "compose.yaml").read_text()
    assert 'command: ["webhook"]' in compose and "webhook set" not in compose.split("name:")[1]
    unit = (DEPLOY / "coffeebot.service").read_text()
    assert "ExecStart=/usr/bin/env bash scripts/run webhook\n" in unit
    replicas = len(re.findall(r"^  bot-\d+: \*bot$", compose, re.MULTILINE))
    assert replicas == 2 and f'WEBHOOK_REPLICAS: "{replicas}"' in compose
    caddy = (DEPLOY / "Caddyfile").read_text()
    assert "health_uri /healthz" in caddy and "bot-1:8080 bot-2:8080" in caddy
