"""What each bridge network's ids look like and mean (mautrix bridgev2 bridges: WhatsApp, Signal,
Meta, Google Messages, Slack, and a generic profile for any other), ghost Matrix IDs, and how to
tell a bridgev2 database (and its network) from a legacy one. Pure: imports only ``listener.core``.
Every rule names the upstream file it was read from; docs/NETWORKS.md sums them up.
"""
