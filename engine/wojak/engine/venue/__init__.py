"""Venues: where orders execute. The sandbox broker is the Lambda handler in ``sandbox``."""

from wojak.engine.venue._base import Venue, VenueError, VenueReport, VenueStatus
from wojak.engine.venue._checks import check_report, fill_price
from wojak.engine.venue._inprocess import InProcessSandboxVenue
from wojak.engine.venue._lambda import LambdaVenue, LambdaVenueConfig

__all__ = [
    "InProcessSandboxVenue",
    "LambdaVenue",
    "LambdaVenueConfig",
    "Venue",
    "VenueError",
    "VenueReport",
    "VenueStatus",
    "check_report",
    "fill_price",
]
