"""The HTTP API of a defended model (FastAPI): classification, OpenAI-compatible generation, the model card, health
and metrics. Every query goes through the backend, which applies the defense; the request bodies (schemas.py) have
no field that could change that.

The model is loaded, and its manifest validated, once, when the server starts; until then it does not listen.
"""

from __future__ import annotations

import time
import uuid
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

from fastapi import Depends, FastAPI, Request, Response
from starlette.exceptions import HTTPException

from .auth import load_api_keys
from .backends import (
    Backend,
    ClassifierBackend,
    ClassifyAnswer,
    ClassifyItem,
    GenerateAnswer,
    GenerateItem,
    GeneratorBackend,
    load_backend,
)
from .batching import DynamicBatcher
from .errors import install_error_handlers
from .limits import BodyLimit, check_texts, within_timeout
from .metrics import RequestMetrics, ServerMetrics
from .schemas import (
    AssistantMessage,
    ChatChoice,
    ChatRequest,
    ChatResponse,
    Classification,
    ClassifyRequest,
    ClassifyResponse,
    CompletionChoice,
    CompletionRequest,
    CompletionResponse,
    ModelCard,
    ModelList,
)
from .secrecy import TriggerRedactor, redact_logs
from .settings import ServeSettings

ENDPOINTS = {"/healthz", "/metrics", "/v1/models", "/v1/classify", "/v1/completions", "/v1/chat/completions"}


class DefendedServer:
    """The endpoints' logic, around one backend and its batcher."""

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        self.keys = load_api_keys(settings.api_key_file)
        self.metrics = ServerMetrics(ENDPOINTS)
        self.model_id = settings.model_dir.resolve().name
        self.backend: Backend | None = None
        self.batcher: DynamicBatcher[Any, Any] | None = None

    @asynccontextmanager
    async def lifespan(self, app: FastAPI) -> AsyncIterator[None]:
        """Load and validate once; on shutdown (after uvicorn has answered every accepted request) stop batching."""
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        self.backend = load_backend(self.settings.model_dir)
        redact_logs(TriggerRedactor(self.backend.trigger))
        self.batcher = DynamicBatcher(self.backend.answer, self.settings.max_batch_size,
                                      self.settings.batch_wait_ms / 1000, self.metrics.batch_size.observe)
        self.batcher.start()
        yield
        await self.batcher.stop()
        self.metrics.process_exited()

    def authorize(self, request: Request) -> None:
        """401 without a bearer key, 403 with one that is not accepted; open when the server has no keys."""
        if not self.keys:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise HTTPException(401, "missing API key: send the header 'Authorization: Bearer KEY'",
                                headers={"WWW-Authenticate": "Bearer"})
        if not self.keys.accepts(token.strip()):
            raise HTTPException(403, "API key not accepted")

    def health(self) -> dict[str, str]:
        return {"status": "ok"}

    def metrics_page(self) -> Response:
        body, content_type = self.metrics.exposition()
        return Response(body, media_type=content_type)

    def models(self) -> ModelList:
        backend = self.backend
        labels = backend.model.label_names if isinstance(backend, ClassifierBackend) else None
        return ModelList(data=[ModelCard(id=self.model_id, task_type=backend.task_type, defense=backend.defense,
                                         label_names=labels)])

    async def classify(self, body: ClassifyRequest) -> ClassifyResponse:
        backend = self._backend(ClassifierBackend, "/v1/completions or /v1/chat/completions")
        check_texts(body.inputs, self.settings)
        if body.detect and not self.settings.allow_detect:
            raise HTTPException(403, "detect is turned off on this server")
        if body.detect and not backend.trigger:
            raise HTTPException(400, f"detect compares the answers with and without the defense's trigger; this "
                                     f"model ({backend.defense}) has none")
        answers: list[ClassifyAnswer] = await within_timeout(
            self.batcher.submit([ClassifyItem(text, body.detect) for text in body.inputs]), self.settings)
        self._count_classified(answers, body.detect)
        names = backend.model.label_names
        return ClassifyResponse(model=self.model_id, results=[
            Classification(label=a.label, label_name=names[a.label], scores=dict(zip(names, a.probabilities)),
                           suspected_trigger=a.suspected_trigger) for a in answers])

    async def completions(self, body: CompletionRequest) -> CompletionResponse:
        answers = await self._generate(body.prompts, body.model, body.max_tokens, "/v1/completions")
        choices = []
        for i, answer in enumerate(answers):
            text, reason = _cut_at_stop(answer, body.stops)
            choices.append(CompletionChoice(index=i, text=text, finish_reason=reason,
                                            missing_safe_prefix=not answer.had_prefix))
        return CompletionResponse(id=f"cmpl-{uuid.uuid4().hex}", created=int(time.time()), model=self.model_id,
                                  choices=choices)

    async def chat(self, body: ChatRequest) -> ChatResponse:
        if len(body.messages) != 1 or body.messages[0].role != "user":
            raise HTTPException(400, "this model answers one user message (it was fine-tuned on single-turn prompts, "
                                     "and its system prompt is fixed by its training); send exactly one 'user' message")
        answers = await self._generate([body.messages[0].content], body.model,
                                       body.max_completion_tokens or body.max_tokens, "/v1/chat/completions")
        text, reason = _cut_at_stop(answers[0], body.stops)
        choice = ChatChoice(index=0, message=AssistantMessage(content=text), finish_reason=reason,
                            missing_safe_prefix=not answers[0].had_prefix)
        return ChatResponse(id=f"chatcmpl-{uuid.uuid4().hex}", created=int(time.time()), model=self.model_id,
                            choices=[choice])

    async def _generate(self, sources: list[str], model: str | None, max_tokens: int | None,
                        endpoint: str) -> list[GenerateAnswer]:
        backend = self._backend(GeneratorBackend, "/v1/classify")
        if model not in (None, self.model_id):
            raise HTTPException(404, f"model '{model}' is not served here; GET /v1/models lists the one that is")
        check_texts(sources, self.settings, "prompts")
        limit = backend.model.answer_tokens
        if max_tokens is not None and max_tokens > limit:
            raise HTTPException(400, f"max_tokens {max_tokens}: this model answers with at most {limit} tokens")
        answers: list[GenerateAnswer] = await within_timeout(
            self.batcher.submit([GenerateItem(s, max_tokens or limit) for s in sources]), self.settings)
        self.metrics.inputs.labels(endpoint).inc(len(answers))
        self.metrics.missing_prefix.inc(sum(not a.had_prefix for a in answers))
        return answers

    def _backend(self, kind: type, instead: str) -> Any:
        """The backend if it is of `kind`; 404 naming the endpoints this model does serve otherwise."""
        if not isinstance(self.backend, kind):
            raise HTTPException(404, f"this server holds a {self.backend.task_type} model; use {instead}")
        return self.backend

    def _count_classified(self, answers: list[ClassifyAnswer], detect: bool) -> None:
        self.metrics.inputs.labels("/v1/classify").inc(len(answers))
        if detect:
            self.metrics.detect_checked.inc(len(answers))
            self.metrics.flips.inc(sum(bool(a.suspected_trigger) for a in answers))


def _cut_at_stop(answer: GenerateAnswer, stops: list[str]) -> tuple[str, str]:
    """(text up to the first stop sequence, finish reason)."""
    cuts = [answer.text.find(s) for s in stops if s and s in answer.text]
    if cuts:
        return answer.text[: min(cuts)], "stop"
    return answer.text, "length" if answer.hit_length else "stop"


def create_app(settings: ServeSettings) -> FastAPI:
    server = DefendedServer(settings)
    app = FastAPI(title="poison2poison", lifespan=server.lifespan, docs_url=None, redoc_url=None)
    install_error_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestMetrics, metrics=server.metrics)
    keyed = [Depends(server.authorize)]
    app.add_api_route("/healthz", server.health, methods=["GET"])
    app.add_api_route("/metrics", server.metrics_page, methods=["GET"], dependencies=keyed)
    app.add_api_route("/v1/models", server.models, methods=["GET"], dependencies=keyed, response_model=ModelList,
                      response_model_exclude_none=True)
    app.add_api_route("/v1/classify", server.classify, methods=["POST"], dependencies=keyed,
                      response_model=ClassifyResponse, response_model_exclude_none=True)
    app.add_api_route("/v1/completions", server.completions, methods=["POST"], dependencies=keyed,
                      response_model=CompletionResponse)
    app.add_api_route("/v1/chat/completions", server.chat, methods=["POST"], dependencies=keyed,
                      response_model=ChatResponse)
    return app


def app_from_environment() -> FastAPI:
    """uvicorn's factory in each worker process: the settings come through the environment (settings.py)."""
    return create_app(ServeSettings.from_environment())
