"""An example Fay plugin package.

It shows the three things most plugins do: register a tool the agent can call, declare its own settings
(``plugins.weather.*``, e.g. ``FAY_PLUGINS__WEATHER__UNITS=imperial``), and add a command to the ``fay`` CLI.
Install it with ``pip install -e examples/fay-plugin-weather``; ``fay plugins`` then lists it.
"""

from __future__ import annotations

from typing import Literal

import click
from pydantic import BaseModel

from fay_core import hookimpl
from fay_core.hookspecs import RegisterSettings, RegisterTool

# A tiny offline table stands in for a weather API so the example runs anywhere.
_FORECASTS = {"shanghai": (18, "light rain"), "london": (11, "cloudy"), "new york": (15, "sunny")}


class WeatherSettings(BaseModel):
    units: Literal["metric", "imperial"] = "metric"


def weather(city: str) -> str:
    """Today's weather forecast for a city (Shanghai, London or New York in this example)."""
    found = _FORECASTS.get(city.strip().lower())
    if found is None:
        return f"no forecast for {city!r}"
    celsius, sky = found
    return f"{city}: {sky}, {celsius} °C"


@hookimpl
def register_settings(register: RegisterSettings) -> None:
    register("weather", WeatherSettings)


@hookimpl
def register_tools(register: RegisterTool) -> None:
    register(weather)


@hookimpl
def register_commands(cli: click.Group) -> None:
    @cli.command(name="weather")
    @click.argument("city")
    def weather_command(city: str) -> None:
        """Print today's forecast for CITY (example plugin)."""
        click.echo(weather(city))
