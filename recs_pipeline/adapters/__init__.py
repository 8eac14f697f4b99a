"""Adapters: event sources, the lake, the publisher."""
