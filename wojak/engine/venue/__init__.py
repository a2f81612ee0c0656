"""Venues: where orders execute. The sandbox broker is the Lambda handler in ``sandbox``."""

from wojak.engine.venue._base import Venue, VenueError, VenueReport, VenueStatus
from wojak.engine.venue._inprocess import InProcessSandboxVenue

__all__ = ["InProcessSandboxVenue", "Venue", "VenueError", "VenueReport", "VenueStatus"]
