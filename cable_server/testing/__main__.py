"""``python -m cable_server.testing``: serve the fake OpenAI server (see ``--help``)."""

from .fake_openai import main

main()
