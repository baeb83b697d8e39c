"""The plugin's HTTP API over one logdir, through TensorBoard's WSGI app (no server).

Shared by the logger tests that read back what `AttentionLogger` wrote, on any backend:
TensorBoard's Python loader reads the event files without TensorFlow.
"""

from __future__ import annotations

import json
import urllib.parse

from tensorboard.backend import application
from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
from tensorboard.plugins import base_plugin
from werkzeug import test as werkzeug_test

from tb_plugin.plugin import AttentionPlugin


class Routes:
    def __init__(self, logdir):
        multiplexer = plugin_event_multiplexer.EventMultiplexer(
            tensor_size_guidance={"attention": 0, "images": 0, "scalars": 0}
        )
        multiplexer.AddRunsFromDirectory(str(logdir))
        multiplexer.Reload()
        self.provider = data_provider.MultiplexerDataProvider(multiplexer, str(logdir))
        context = base_plugin.TBContext(
            logdir=str(logdir), data_provider=self.provider, sampling_hints={"attention": 0}
        )
        self.client = werkzeug_test.Client(
            application.TensorBoardWSGI([AttentionPlugin(context)], data_provider=self.provider)
        )

    def get(self, route, **params):
        response = self.client.get(
            f"/data/plugin/attention/{route}?" + urllib.parse.urlencode(params)
        )
        assert response.status_code == 200, response.get_data(as_text=True)
        return json.loads(response.get_data())

    def tags(self, run="attention"):
        return set(self.get("tags").get(run, {}))

    def steps(self, tag, run="attention"):
        return [s["step"] for s in self.get("steps", run=run, tag=tag)]

    def matrix(self, tag, run="attention", **params):
        return self.get("matrix", run=run, tag=tag, **params)

    def scalars(self, run="attention"):
        from tensorboard import context

        return self.provider.read_scalars(
            context.RequestContext(), experiment_id="", plugin_name="scalars", downsample=1000
        ).get(run, {})
