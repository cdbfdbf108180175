"""The example classes of the Opsbox plugin guide, as written there: pluggy hook
implementations passing pydantic ``Result`` models. Trellis runs them unchanged; the pipeline
that chains input -> assistant -> output comes with the workflow."""

from __future__ import annotations

from pluggy import HookimplMarker
from pydantic import BaseModel

hookimpl = HookimplMarker("opsbox")


class Result(BaseModel):
    relates_to: str
    result_name: str
    result_description: str
    details: dict
    formatted: str


class ExampleInputPlugin:
    @hookimpl
    def process(self, data):
        # Simulate data gathering
        gathered_data = {"key1": "value1", "key2": "value2"}
        result = Result(
            relates_to="ExampleInputPlugin",
            result_name="GatheredData",
            result_description="Data gathered from the example input plugin.",
            details=gathered_data,
            formatted=str(gathered_data),
        )
        return [result]


class ExampleAssistantPlugin:
    @hookimpl
    def process_input(self, input_results: list[Result]) -> list[Result]:
        processed_results = []
        for result in input_results:
            processed_data = {k: v.upper() for k, v in result.details.items()}
            new_result = Result(
                relates_to=result.relates_to,
                result_name="ProcessedData",
                result_description="Data processed by the assistant plugin.",
                details=processed_data,
                formatted=str(processed_data),
            )
            processed_results.append(new_result)
        return processed_results


class ExampleOutputPlugin:
    @hookimpl
    def process_results(self, results: list[Result]) -> None:
        for result in results:
            print(f"Output from {result.relates_to}: {result.formatted}")


#: What the `trellis.plugins` entry point names: the three classes, served as one plugin.
PLUGINS = [ExampleInputPlugin, ExampleAssistantPlugin, ExampleOutputPlugin]
