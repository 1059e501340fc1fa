"""HTTP routers of the central service (one module per area of the UI); see ems.central.app."""
