"""The README lists every environment variable the services read, as the settings define them."""

from __future__ import annotations

from services import documentation


def test_the_readme_configuration_table_is_generated_from_the_settings():
    readme = documentation.README.read_text(encoding="utf-8")
    assert documentation.readme_with_configuration(readme) == readme, "stale: run `mynumber docs`"


def test_every_setting_of_every_service_is_listed():
    table = documentation.configuration_table()
    for settings_class in documentation._settings_classes().values():
        for name in settings_class.model_fields:
            assert f"`MYNUMBER_{name.upper()}`" in table, name
