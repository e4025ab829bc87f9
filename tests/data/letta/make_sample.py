"""How tests/data/letta/sample.af was made: with Letta's own server types (``letta`` 0.16.8,
``letta.schemas.agent_file.AgentFileSchema`` and the models it is built of), so the file is one
that Letta's schema itself produces. Not run by the tests: the ``letta`` server package cannot be
installed beside vexchange's pinned dependencies (it pins opentelemetry-api 1.30.0), so it ran
once in a separate virtual environment::

    python -m venv /tmp/letta-venv && /tmp/letta-venv/bin/pip install letta==0.16.8 asyncpg
    /tmp/letta-venv/bin/python tests/data/letta/make_sample.py tests/data/letta/sample.af

Everything in the file is made up here; the secret values are set and Letta's export rule
(values emptied) is applied by hand, as ``AgentSerializationManager`` does on export. Letta
gives each message a random ``otid``, so a new run differs from the committed file there alone.
"""

from __future__ import annotations

import sys
from datetime import datetime, timezone

from letta.schemas.agent_file import (AgentFileSchema, AgentSchema, BlockSchema, FileSchema,
                                      MCPServerSchema, MessageSchema, SkillSchema, SourceSchema,
                                      ToolSchema)
from letta.schemas.embedding_config import EmbeddingConfig
from letta.schemas.letta_message_content import ReasoningContent, TextContent
from letta.schemas.llm_config import LLMConfig
from letta.schemas.message import ToolReturn
from letta.schemas.tool_rule import ChildToolRule, InitToolRule, TerminalToolRule

T0 = datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=timezone.utc)


def at(seconds: int) -> datetime:
    return T0.replace(second=(T0.second + seconds) % 60, minute=T0.minute + (T0.second + seconds) // 60)


def main(path: str) -> None:
    embedding = EmbeddingConfig(embedding_endpoint_type="openai", embedding_model="text-embedding-3-small",
                                embedding_dim=1536, embedding_chunk_size=300,
                                embedding_endpoint="https://api.openai.com/v1")
    llm = LLMConfig(model="gpt-4o-mini", model_endpoint_type="openai",
                    model_endpoint="https://api.openai.com/v1", context_window=32000,
                    handle="openai/gpt-4o-mini", temperature=0.7)
    call = {"id": "call_weather_1", "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Zürich"}'}}
    messages = [
        MessageSchema(id="message-0", role="system",
                      content=[TextContent(text="You are Sam. <memory_blocks/>")],
                      model="gpt-4o-mini", agent_id="agent-0", created_at=at(0)),
        MessageSchema(id="message-1", role="user",
                      content=[TextContent(text="Hi Sam, I'm Chad. I sail on weekends ⛵.")],
                      agent_id="agent-0", created_at=at(5)),
        MessageSchema(id="message-2", role="assistant",
                      content=[ReasoningContent(is_native=True, reasoning="Check the weather first.",
                                                signature=None)],
                      model="gpt-4o-mini", agent_id="agent-0", tool_calls=[call], created_at=at(7)),
        MessageSchema(id="message-3", role="tool",
                      content=[TextContent(text='{"temp_c": 14, "wind": "NW 12kn"}')],
                      agent_id="agent-0", tool_call_id="call_weather_1", name="get_weather",
                      tool_returns=[ToolReturn(tool_call_id="call_weather_1", status="success",
                                               func_response='{"temp_c": 14, "wind": "NW 12kn"}')],
                      created_at=at(8)),
        MessageSchema(id="message-4", role="assistant",
                      content=[TextContent(
                          text="Nice to meet you, Chad! 14 °C and a NW breeze: good sailing.")],
                      model="gpt-4o-mini", agent_id="agent-0", created_at=at(9)),
    ]
    secrets = {"WEATHER_API_KEY": "sk-not-a-real-key-but-a-secret"}
    agent = AgentSchema(
        id="agent-0", name="sailing_buddy", system="You are Sam. <memory_blocks/>",
        agent_type="letta_v1_agent",
        description="A test agent with memory, a custom tool and a conversation", tags=["test", "sailing"],
        metadata={"team": "vexchange", "level": 3}, llm_config=llm, embedding_config=embedding,
        tool_ids=["tool-0", "tool-1"], block_ids=["block-0", "block-1"], source_ids=["source-0"],
        tool_rules=[InitToolRule(tool_name="get_weather"),
                    ChildToolRule(tool_name="get_weather", children=["send_message"]),
                    TerminalToolRule(tool_name="send_message")],
        include_base_tools=False, tool_exec_environment_variables=secrets, secrets=secrets,
        in_context_message_ids=[m.id for m in messages], messages=messages)
    # Letta's export rule: secret keys stay, values are emptied
    agent.tool_exec_environment_variables = {key: "" for key in secrets}
    agent.secrets = {key: "" for key in secrets}
    blocks = [
        BlockSchema(id="block-0", label="human", value="Name: Chad\nLikes: sailing, Formula 1", limit=5000,
                    description="What I know about the user", metadata={"source": "conversation"}),
        BlockSchema(id="block-1", label="persona", value="I am Sam, curious and calm.", limit=5000,
                    read_only=True, description="Who I am"),
    ]
    tools = [
        ToolSchema(id="tool-0", name="get_weather", tool_type="custom", source_type="python",
                   description="Get the current weather for a city.",
                   source_code='def get_weather(city: str) -> str:\n'
                               '    """Get the current weather for a city.\n\n'
                               '    Args:\n        city: The city.\n    """\n    return "{}"\n',
                   json_schema={"name": "get_weather", "description": "Get the current weather for a city.",
                                "parameters": {"type": "object",
                                               "properties": {"city": {"type": "string",
                                                                       "description": "The city."}},
                                               "required": ["city"]}},
                   tags=["weather"], return_char_limit=6000),
        ToolSchema(id="tool-1", name="send_message", tool_type="letta_core", source_type="python",
                   description="Sends a message to the human user.",
                   json_schema={"name": "send_message", "description": "Sends a message to the human user.",
                                "parameters": {"type": "object",
                                               "properties": {"message": {
                                                   "type": "string", "description": "Message contents."}},
                                               "required": ["message"]}},
                   tags=["letta_core"], return_char_limit=6000),
    ]
    sources = [SourceSchema(id="source-0", name="sailing-notes", description="Notes about sailing",
                            embedding_config=embedding)]
    files = [FileSchema(id="file-0", source_id="source-0", file_name="knots.md", file_type="text/markdown",
                        file_size=52, content="# Knots\nBowline, cleat hitch, figure eight.\n")]
    mcp = [MCPServerSchema(id="mcp_server-0", server_type="streamable_http", server_name="charts",
                           server_url="http://127.0.0.1:9000/mcp", metadata_={"note": "local"})]
    skills = [SkillSchema(name="tides", files={"SKILL.md": "# Tides\nRead the tide table before leaving."})]
    schema = AgentFileSchema(agents=[agent], groups=[], blocks=blocks, files=files, sources=sources,
                             tools=tools, mcp_servers=mcp, skills=skills,
                             metadata={"revision_id": "test-0001"}, created_at=at(30))
    with open(path, "w", encoding="utf-8") as out:
        out.write(schema.model_dump_json(indent=2))
        out.write("\n")


if __name__ == "__main__":
    main(sys.argv[1])
