"""The HTTP API (`loyalty api`): events in, outcomes and member state out, points at checkout.

An entry layer like the CLI: routes parse, check the key and call one service.
"""
