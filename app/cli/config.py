"""The deployment settings, or one line naming the variable that is wrong."""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.cli.errors import CliError

if TYPE_CHECKING:  # imported lazily at run time: `mbc-cds --help` stays fast
    from app.settings import Settings


def load_settings() -> Settings:
    from pydantic import ValidationError

    from app.settings import get_settings

    try:
        return get_settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        name = "MBC_CDS_" + "_".join(str(x) for x in first.get("loc", ())).upper()
        raise CliError(f"configuration error: {name}: {first.get('msg', 'invalid')}. "
                       "Fix the environment variable (or .env) and run again.") from None
