"""The request and response bodies. Requests forbid unknown fields: there is no field through which a client could
send a trigger, choose the prompt format or turn the defense off, and one that tries gets 400 naming the field.

The generation bodies follow OpenAI's completions and chat completions; the sampling fields they commonly carry
(`temperature`, `top_p`, `seed`, `user`) are accepted and do not change the answer, which is greedy, as in
evaluation.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ClassifyRequest(_Request):
    inputs: list[str] = Field(min_length=1)
    detect: bool = Field(False, description="also answer each input without the trigger and flag where they differ")


class Classification(BaseModel):
    label: int
    label_name: str
    scores: dict[str, float] = Field(description="probability per label name, in the original label space")
    suspected_trigger: bool | None = Field(None, description="with detect: the plain and defended answers differ")


class ClassifyResponse(BaseModel):
    model: str
    results: list[Classification]


class _GenerationRequest(_Request):
    model: str | None = None
    max_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    n: Literal[1] = 1
    stream: Literal[False] = False
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    user: str | None = None

    @property
    def stops(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])


class CompletionRequest(_GenerationRequest):
    prompt: str | list[str]

    @property
    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else self.prompt


class ChatMessage(_Request):
    role: Literal["system", "user", "assistant"]
    content: str


class ChatRequest(_GenerationRequest):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)


class _Choice(BaseModel):
    index: int
    finish_reason: Literal["stop", "length"]
    missing_safe_prefix: bool = Field(description="the model left the benign context: the output is as generated")


class CompletionChoice(_Choice):
    text: str


class CompletionResponse(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(_Choice):
    message: AssistantMessage


class ChatResponse(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    owned_by: str = "poison2poison"
    task_type: Literal["classification", "generation"]
    defense: str
    label_names: list[str] | None = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
