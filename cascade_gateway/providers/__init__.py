"""Upstream adapters: each turns a `ChatRequest` into one upstream's wire calls and back.

    registry.build_provider(name, kind, ...)  ->  openai.OpenAIProvider
                                                   anthropic.AnthropicProvider
                                                   litellm.LiteLLMProvider

Nothing is imported here, so `providers.base` (the interface) stays cheap to import; litellm is
imported only when a litellm provider is built.
"""
