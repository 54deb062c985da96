"""archiver-db: archive every bridged WhatsApp message straight from the bridge and Synapse DBs."""

__version__ = "0.1.0"
