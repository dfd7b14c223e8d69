"""A small OpenAI-compatible chat-completions server for tests: POST /v1/chat/completions, scripted per test.

It speaks the real wire protocol, so the real `openai` client talks HTTP to it: JSON responses, or Server-Sent
Events (`data: {chunk}` … `data: [DONE]`) when the request says `"stream": true`, with tool calls streamed as
`delta.tool_calls` pieces the way OpenAI sends them. Every request body is recorded for assertions.

    with ChatServer() as server:
        server.script(ToolCalls(("get_metric", {...})), Text("The answer"))
        client = OpenAI(base_url=server.url, api_key="test", max_retries=0)
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Text:
    """A final answer, streamed in pieces of `piece` characters."""

    content: str
    piece: int = 7


@dataclass(frozen=True)
class ToolCalls:
    """One assistant turn that calls tools: (name, arguments) pairs; arguments dicts or raw strings."""

    calls: tuple[tuple[str, Any], ...]
    content: str = ""

    def __init__(self, *calls: tuple[str, Any], content: str = "") -> None:
        object.__setattr__(self, "calls", tuple(calls))
        object.__setattr__(self, "content", content)


@dataclass(frozen=True)
class Failure:
    """An HTTP error with an OpenAI-style error body."""

    status: int
    message: str = "scripted failure"
    type: str = "server_error"


@dataclass(frozen=True)
class Stall:
    """Hold the request for `seconds` before answering with `then` (to trip the client's timeout)."""

    seconds: float
    then: Any = field(default_factory=lambda: Text("late"))


class ChatServer:
    """Threaded HTTP server answering chat completions from a script (the last step repeats if `repeat_last`)."""

    def __init__(self, *, repeat_last: bool = False) -> None:
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self._script: deque[Any] = deque()
        self._repeat_last = repeat_last
        self._last: Any = None
        self._lock = threading.Lock()
        self._released = threading.Event()
        self._calls = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:
                # A client that gave up (its timeout) leaves nothing to answer.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    server._handle(self)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                        name="chat-server", daemon=True)

    # -- lifecycle ------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> ChatServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._released.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def script(self, *steps: Any) -> ChatServer:
        with self._lock:
            self._script.extend(steps)
        return self

    # -- protocol -------------------------------------------------------------------------------
    def _next(self) -> Any:
        with self._lock:
            if self._script:
                self._last = self._script.popleft()
                return self._last
            if self._repeat_last and self._last is not None:
                return self._last
        return Failure(500, "the test script has no more responses")

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        if h.path.rstrip("/") != "/v1/chat/completions":
            self._send_json(h, 404, {"error": {"message": f"no route {h.path}", "type": "not_found"}})
            return
        body = json.loads(h.rfile.read(int(h.headers.get("Content-Length", 0))) or b"{}")
        with self._lock:
            self.requests.append(body)
            self.headers.append({k.lower(): v for k, v in h.headers.items()})
            self._calls += 1
            n = self._calls
        step = self._next()
        if isinstance(step, Stall):
            self._released.wait(step.seconds)  # a bounded wait that the server's shutdown releases
            step = step.then
        if isinstance(step, Failure):
            self._send_json(h, step.status, {"error": {"message": step.message, "type": step.type, "code": None}})
        elif body.get("stream"):
            self._stream(h, n, body.get("model", "test-model"), step)
        else:
            self._send_json(h, 200, self._completion(n, body.get("model", "test-model"), step))

    @staticmethod
    def _send_json(h: BaseHTTPRequestHandler, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    @staticmethod
    def _args(arguments: Any) -> str:
        return arguments if isinstance(arguments, str) else json.dumps(arguments)

    def _completion(self, n: int, model: str, step: Any) -> dict[str, Any]:
        if isinstance(step, ToolCalls):
            message: dict[str, Any] = {"role": "assistant", "content": step.content or None, "tool_calls": [
                {"id": f"call_{n}_{i}", "type": "function", "function": {"name": name, "arguments": self._args(a)}}
                for i, (name, a) in enumerate(step.calls)]}
            finish = "tool_calls"
        else:
            message, finish = {"role": "assistant", "content": step.content}, "stop"
        return {"id": f"chatcmpl-{n}", "object": "chat.completion", "created": 0, "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}

    def _stream(self, h: BaseHTTPRequestHandler, n: int, model: str, step: Any) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.send_header("Cache-Control", "no-cache")
        h.end_headers()

        def chunk(delta: dict[str, Any], finish: str | None = None) -> None:
            payload = {"id": f"chatcmpl-{n}", "object": "chat.completion.chunk", "created": 0, "model": model,
                       "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            h.wfile.write(f"data: {json.dumps(payload)}\n\n".encode())
            h.wfile.flush()

        chunk({"role": "assistant", "content": ""})
        if isinstance(step, ToolCalls):
            if step.content:
                chunk({"content": step.content})
            for i, (name, a) in enumerate(step.calls):
                chunk({"tool_calls": [{"index": i, "id": f"call_{n}_{i}", "type": "function",
                                       "function": {"name": name, "arguments": ""}}]})
                raw = self._args(a)
                for k in range(0, len(raw), 9):  # arguments arrive in pieces, as from the real API
                    chunk({"tool_calls": [{"index": i, "function": {"arguments": raw[k:k + 9]}}]})
            chunk({}, "tool_calls")
        else:
            for k in range(0, len(step.content), step.piece):
                chunk({"content": step.content[k:k + step.piece]})
            chunk({}, "stop")
        h.wfile.write(b"data: [DONE]\n\n")
        h.wfile.flush()
