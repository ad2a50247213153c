"""Token streaming through GptChatChannel, against our server and Rails: the ``stream`` and ``chats``
scenarios of ``python -m bench`` (see :mod:`bench.stream`, :mod:`bench.chats`).

    .venv/bin/python -m bench.llm_stream [--quick] [--server ours]
"""

from __future__ import annotations

import sys

if __name__ == "__main__":
    from .__main__ import main

    main(["--only", "stream,chats", *sys.argv[1:]])
