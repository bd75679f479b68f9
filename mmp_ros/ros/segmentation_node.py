"""The ``mmp_segmentation`` node: sensor topics in, segmentation and diagnostics out.

Thin glue around the pure core (DESIGN §1, §5). Sensor callbacks only convert, check and
store: decode the image, feed the sensor's :class:`HealthMonitor`, cache the frame in the
:class:`FrameAssembler`. Inference runs in a worker thread of its own that always takes the
latest bundle, so a slow model never delays a health check and frames the model cannot keep
up with are dropped, never queued. A health thread evaluates every sensor each
``health_check_period_s`` and publishes ``/diagnostics`` at once when a level changes, and
every ``diagnostics_period_s`` otherwise.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import ClockChange, JumpThreshold, TimeJump
from rclpy.duration import Duration
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.exceptions import ParameterException, ParameterNotDeclaredException
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSCompatibility, qos_check_compatible, qos_policy_name_from_kind
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header, String

from mmp_ros.core.assembler import ANCHOR_TIMER, FrameAssembler, FrameBundle
from mmp_ros.core.camera_info import camera_info_topic, described_size, size_problem
from mmp_ros.core.health import HealthMonitor, HealthStatus, Level, SensorState, status_node
from mmp_ros.core.latency import LatencyWindow, RecentRate, RecentShare
from mmp_ros.core.parameters import (
    DECODER_PARAMETERS,
    HEALTH_FIELDS,
    NODE_NAME,
    SENSOR_PARAMETERS,
    ParameterError,
    ParameterSpec,
    all_parameters,
    decoder_settings,
    health_config,
    sensor_parameter,
    unknown_parameters,
    validate,
)
from mmp_ros.core.postprocess import (
    NO_PREDICTION,
    PostprocessError,
    best_background,
    colorize,
    modality_marks,
    overlay,
    palette_array,
    substitution,
    to_camera_resolution,
    visualize,
)
from mmp_ros.core.preprocess import build_inputs
from mmp_ros.inference import (
    BackendUnavailableError,
    InferenceBackend,
    InferenceError,
    create_backend,
)
from mmp_ros.metadata import MetadataError, ModelMetadata
from mmp_ros.modalities import MODALITIES
from mmp_ros.ros.diagnostics import (
    MODEL_STATUS,
    diagnostic_array,
    make_status,
    not_in_model_status,
    sensor_status,
)
from mmp_ros.ros.image_msg import (
    compressed_image_fields,
    message_type_name,
    to_image_fields,
    to_image_msg,
    transport_topic,
)
from mmp_ros.ros.qos import latched_qos, output_qos, subscription_qos
from mmp_ros.ros.spin import spin_until_shutdown
from mmp_ros.sensors import (
    MODALITY_INPUTS,
    ImageFields,
    SensorInputError,
    array_to_image,
    decode_frame,
)
from mmp_ros.share import share_folders

try:  # vision_msgs ships with native ROS installs, not with the PyPI wheels
    from vision_msgs.msg import LabelInfo, VisionClass
except ImportError:
    LabelInfo = VisionClass = None

OVERLAY_PREFERENCE = ('rgb', 'thermal', 'depth', 'polarization')
SIM_TIME_POLL_S = 0.005  # how often the timer anchor looks at a simulated clock
# Forward jumps of the clock shorter than this reach no jump callback (Gazebo's 1 ms /clock
# steps): the smallest timeout_s there is. _on_time_jump returns at once for a longer step
# within every enabled sensor's timeout_s (a tick of ros2 bag play's 40 Hz /clock, 25 ms).
MIN_FORWARD_JUMP_S = next(s.minimum for s in SENSOR_PARAMETERS if s.name == 'timeout_s')


class NodeStartError(RuntimeError):
    """The node cannot start (bad parameters, model file); the message says what to fix."""


@dataclass
class _ModelState:
    """What the worker thread reports for the model's diagnostics (guarded by the lock)."""

    inferences: int = 0
    # Frames of the anchor stream that arrived and were judged (not those under way at a
    # jump back of the clock, dropped unjudged: they were never the model's to run on).
    anchor_frames: int = 0
    # Inferences on one of those frames: not those another stream anchored while the anchor
    # stream was down, nor the timer's, which never make up for an anchor frame dropped.
    anchored: int = 0
    last_mask: str = ''
    last_missing: dict[str, str] = field(default_factory=dict)  # of the last bundle, and why
    last_error: str = ''
    camera_info: str = ''  # what became of segmentation/camera_info at the last output
    outputs: RecentRate = field(default_factory=RecentRate)  # publication times, last 10 s


def model_folders() -> list[Path]:
    """Where the package ships its model: share/mmp_ros/models (of the ament index, of this
    interpreter's prefix), then the source tree's."""
    return share_folders('models')


def default_model_path(folders: Sequence[Path] | None = None, backend: str = 'auto') -> Path:
    """The one model of the first of ``folders`` (default :func:`model_folders`) that holds
    any: the ONNX file, or for the torch backend the checkpoint (.pt)."""
    folders = model_folders() if folders is None else list(folders)
    torch = backend == 'torch'
    for folder in folders:
        models = sorted(folder.glob('*.pt' if torch else '*.onnx'))
        if len(models) == 1:
            return models[0]
        if len(models) > 1:
            raise NodeStartError(
                f'{folder} holds several models {[m.name for m in models]}; choose one with '
                'model_file_path'
            )
    what = 'a checkpoint (.pt) written by training' if torch else (
        'an ONNX model exported by `mmp_ros export`'
    )
    raise NodeStartError(
        f'no model_file_path given and no shipped model in {[str(f) for f in folders]}; set '
        f'model_file_path to {what}'
    )


def descriptor(spec: ParameterSpec) -> ParameterDescriptor:
    """The ROS descriptor of one parameter: description, range, choices, read-only."""
    desc = ParameterDescriptor(description=spec.description, read_only=spec.read_only)
    if spec.choices:
        desc.additional_constraints = f'one of: {", ".join(spec.choices)}'
    if spec.minimum is not None and spec.maximum is not None:
        if isinstance(spec.default, float):
            desc.floating_point_range = [
                FloatingPointRange(from_value=spec.minimum, to_value=spec.maximum, step=0.0)
            ]
        elif isinstance(spec.default, int) and not isinstance(spec.default, bool):
            desc.integer_range = [
                IntegerRange(from_value=int(spec.minimum), to_value=int(spec.maximum), step=1)
            ]
    return desc


class _RclpyLogHandler(logging.Handler):
    """Forwards the inference package's ``logging`` records to the node's logger."""

    def __init__(self, node: Node) -> None:
        super().__init__()
        self._logger = node.get_logger()
        self._context = node.context

    def emit(self, record: logging.LogRecord) -> None:
        if not self._context.ok():  # a stop under way: SegmentationCore._may_log
            return
        message = self.format(record)
        if record.levelno >= logging.ERROR:
            self._logger.error(message)
        elif record.levelno >= logging.WARNING:
            self._logger.warning(message)
        else:
            self._logger.info(message)


def _stamp_seconds(header: Header) -> float:
    return header.stamp.sec + header.stamp.nanosec * 1e-9


class SegmentationCore:
    """The node's work, in the phases of a managed node's transitions (configure, activate,
    deactivate, cleanup): mixed into a plain :class:`~rclpy.node.Node`, which goes through
    configure and activate as it is constructed (:class:`SegmentationNode`), or into a
    :class:`~rclpy.lifecycle.LifecycleNode` whose transitions run them
    (:class:`ManagedSegmentationNode`)."""

    JOIN_TIMEOUT_S = 5.0  # how long destroy_node waits for the worker threads to stop

    def _init_core(self) -> None:
        """What destroy_node and cleanup release, there from the start: a start that fails
        destroys the node at once (rclpy's context would otherwise destroy it at shutdown,
        half built)."""
        self._backend: InferenceBackend | None = None
        self._wake = threading.Event()
        self._retime = threading.Event()  # max_rate_hz or anchor changed: recompute the wait
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._time_jump_handle = None
        self._configured = False  # the model and the state of the sensors exist

    def _declare(self) -> None:
        """Declare and validate the parameters, with the callbacks that check each change:
        as the node is constructed, the managed node's too (unconfigured, ``ros2 param``
        lists, gets and sets them). Raises :class:`NodeStartError` for a value given at
        start (-p, --params-file) that is invalid."""
        self._specs = all_parameters(MODALITIES)
        self._values = self._declare_parameters()
        self.add_pre_set_parameters_callback(self._integers_as_floats)
        self.add_on_set_parameters_callback(self._on_set_parameters)

    def _configure(self) -> None:
        """The parameters' values, the model and the core state, publishers: everything but
        the input and the worker threads. Raises :class:`NodeStartError` for what the user
        must fix."""
        self._lock = threading.Lock()
        self._values = {name: self._parameter_value(name) for name in self._specs}
        self._backend = self._create_backend()
        self.metadata: ModelMetadata = self._backend.metadata
        self.modalities = self.metadata.modalities
        self._build_core()
        self._create_publishers()
        # Any jump back of the node's clock (use_sim_time with a looped bag or a simulator
        # reset), one forward that would make a camera look silent (a bag seeked forward, a
        # simulator fast-forwarded: _on_time_jump), or a switch between wall and sim time.
        self._time_jump_handle = self.get_clock().create_jump_callback(
            JumpThreshold(min_forward=Duration(seconds=MIN_FORWARD_JUMP_S),
                          min_backward=Duration(nanoseconds=-1)),
            post_callback=self._on_time_jump,
        )
        if self._may_log():
            self.get_logger().info(
                f'{self._backend.describe()}; model {self.metadata.method} on '
                f'{"+".join(self.modalities)}, input {self.metadata.input_size}, '
                f'{self.metadata.num_classes} classes'
            )
        self._configured = True

    def _may_log(self) -> bool:
        """Whether a line about the node's progress is still worth logging: not once the
        context has been shut down. rclpy's signal handler shuts it down (Ctrl-C, SIGTERM)
        before the main thread stops the start-up or the worker threads, and a line logged
        meanwhile came with rcl's 'Failed to publish log message to rosout: publisher's
        context is invalid' under it."""
        return self.context.ok()

    def _activate(self) -> None:
        """Label info, the sensor subscriptions and the worker threads: the node at work."""
        self._publish_label_info()
        self._create_subscriptions()
        self._last_diagnostics_key: tuple = ()
        self._next_diagnostics = 0.0
        # Inference and health checks each run in a thread of their own: neither waits behind
        # the sensor callbacks in the executor's queue, nor behind each other. Each activation
        # has its own stop event: a thread of the last one still finishing an inference stops.
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._inference_loop, args=(self._stop,),
                             name='mmp_inference', daemon=True),
            threading.Thread(target=self._health_loop, args=(self._stop,),
                             name='mmp_health', daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _stop_threads(self) -> list[str]:
        """Stop the worker threads; the names of those still running after JOIN_TIMEOUT_S."""
        self._stop.set()
        self._wake.set()
        self._retime.set()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout=self.JOIN_TIMEOUT_S)
        return [thread.name for thread in self._threads if thread.is_alive()]

    def _release(self) -> None:
        """Stop the threads, close the backend and drop the clock callback (destroy_node,
        cleanup): nothing of the last configure is left running."""
        running = self._stop_threads()
        if running:  # an inference still under way: its device buffers must outlive it
            self.get_logger().warning(
                f'{", ".join(running)} still running {self.JOIN_TIMEOUT_S:g} s after the stop; '
                'the inference backend is left open for the process exit to release')
        elif self._backend is not None:
            self._backend.close()
            self._backend = None
        if self._time_jump_handle is not None:
            self._time_jump_handle.unregister()
            self._time_jump_handle = None

    # --- start-up ----------------------------------------------------------------------

    def _declare_parameters(self) -> dict[str, Any]:
        """Declare every parameter once (descriptor from the table) and validate them all."""
        overrides = getattr(self, '_parameter_overrides', {})
        overrides.update((p.name, p) for p in self._integers_as_floats(list(overrides.values())))
        # Those rclpy declares for every node (use_sim_time) are its own to check.
        overrides = {n: p for n, p in overrides.items() if not self.has_parameter(n)}
        problem = self._type_problem(overrides.values())
        if problem:  # rclpy's refusal says 'expecting type 'DOUBLE'' and the name twice
            raise NodeStartError(f'invalid parameters: {problem}')
        try:
            # Out of range, rclpy's refusal names the parameter twice and the value as 'for
            # parameter' ('Invalid parameter value (5000.0) for parameter. Reason: ...'). The
            # types are right from here on.
            for parameter in overrides.values():
                spec = self._specs.get(parameter.name)
                if spec is not None and parameter.type_ != Parameter.Type.NOT_SET:
                    spec.check(spec.plain(parameter.value))
            for name, spec in self._specs.items():
                if not self.has_parameter(name):
                    self.declare_parameter(name, spec.default, self._descriptor(spec))
            values = {name: self._parameter_value(name) for name in self._specs}
            validate(values)
        except (ParameterError, ParameterException) as exc:
            raise NodeStartError(f'invalid parameters: {exc}') from exc
        # Values given (-p, --params-file) for names nobody declared: rclpy drops them without
        # a word (qos_overrides.* too: no publisher or subscription of the node asks for them).
        unknown = unknown_parameters(
            (n for n in overrides if not self.has_parameter(n)), self._specs
        )
        if unknown:
            self.get_logger().warning(
                f'ignoring values for parameters this node does not have: {", ".join(unknown)}'
            )
        return values

    def _descriptor(self, spec: ParameterSpec) -> ParameterDescriptor:
        return descriptor(spec)

    def _integers_as_floats(self, parameters: list[Parameter]) -> list[Parameter]:
        """A whole number for a float parameter (``-p max_rate_hz:=5``, ``expected_rate_hz:
        30`` in a params file, ``ros2 param set ... timeout_s 1``), or whole numbers for a
        list of floats, are taken as floats, where rclpy would refuse them for their type."""

        def as_floats(p: Parameter) -> Parameter:
            spec = self._specs.get(p.name)
            if spec is None:
                return p
            if p.type_ == Parameter.Type.INTEGER and isinstance(spec.default, float):
                return Parameter(p.name, value=float(p.value))
            if p.type_ == Parameter.Type.INTEGER_ARRAY and spec.is_float_list:
                return Parameter(p.name, value=[float(v) for v in p.value])
            return p

        return [as_floats(p) for p in parameters]

    def _type_problem(self, parameters: Iterable[Parameter]) -> str:
        """Why one of ``parameters`` (whole numbers already taken as floats) is of a type its
        parameter does not take, in words ('' when none is): rclpy refuses it first, and at
        run time with the type enum's numbers ("Wrong parameter type, expected '3' got
        '4'"). A read-only parameter is left to rclpy, which refuses any run-time change."""
        for parameter in parameters:
            spec = self._specs.get(parameter.name)
            if spec is None or parameter.type_ == Parameter.Type.NOT_SET:
                continue  # not ours, or a request to undeclare: rclpy's own answers
            if parameter.type_ != Parameter.Type.from_parameter_value(spec.default):
                return spec.type_problem(parameter.value) or (
                    f'{parameter.name} must be {spec.expected_type}, got '
                    f'{parameter.type_.name.lower().replace("_", " ")} {parameter.value!r}'
                )
        return ''

    def _type_refusal(self, parameters: list[Parameter]) -> SetParametersResult | None:
        specs = getattr(self, '_specs', {})  # empty while rclpy's Node.__init__ runs
        if not specs:
            return None
        ours = [p for p in parameters if p.name in specs and self.has_parameter(p.name)
                and not self.describe_parameter(p.name).read_only]
        problem = self._type_problem(self._integers_as_floats(ours)) if ours else ''
        # rclpy's own (use_sim_time): 'ros2 param set /mmp_segmentation use_sim_time 1' was
        # refused with the type enum's numbers too, "expected '1' got '2'".
        rclpys = [p for p in parameters if p.name not in specs and self.has_parameter(p.name)
                  and p.type_ != Parameter.Type.NOT_SET]
        for parameter in rclpys:
            current = self.get_parameter(parameter.name)
            described = self.describe_parameter(parameter.name)
            if problem or described.read_only or described.dynamic_typing or (
                    current.type_ in (parameter.type_, Parameter.Type.NOT_SET)):
                continue
            problem = ParameterSpec(parameter.name, current.value, '').type_problem(
                parameter.value)
        return SetParametersResult(successful=False, reason=problem) if problem else None

    def set_parameters(self, parameter_list: list[Parameter]) -> list[SetParametersResult]:
        """rclpy's, with a value of the wrong type refused in words (:meth:`_type_problem`)."""
        results = []
        for parameter in parameter_list:
            refusal = self._type_refusal([parameter])
            results.append(refusal or super().set_parameters([parameter])[0])
        return results

    def set_parameters_atomically(self, parameter_list: list[Parameter]) -> SetParametersResult:
        """rclpy's (``ros2 param set`` calls it), with a value of the wrong type refused in
        words (:meth:`_type_problem`), and a name the node does not have named in the
        ParameterNotDeclaredException, with the nearest one: rclpy's names none ('Invalid
        access to undeclared parameter(s): []', the reason ``ros2 param set`` printed)."""
        undeclared = [p.name for p in parameter_list if not self.has_parameter(p.name)]
        if undeclared:
            raise ParameterNotDeclaredException(
                unknown_parameters(undeclared, getattr(self, '_specs', {}))
            )
        return self._type_refusal(parameter_list) or super().set_parameters_atomically(
            parameter_list
        )

    def _build_core(self) -> None:
        """Health monitors, decoder settings and the assembler, for the model's modalities."""
        problem = self._anchor_problem(self._values['anchor'])
        if problem:
            raise NodeStartError(problem)
        if not any(self._values[sensor_parameter(m, 'enabled')] for m in self.modalities):
            switches = ', '.join(sensor_parameter(m, 'enabled') for m in self.modalities)
            raise NodeStartError(
                f'every sensor the model takes is disabled ({switches} all false), so nothing '
                'could ever be segmented; enable at least one'
            )
        self._warn_of_a_disabled_anchor(self._values['anchor'])
        try:
            self._palette = palette_array(self.metadata.palette)
        except PostprocessError as exc:  # more classes than mono8 labels can carry
            raise NodeStartError(
                f'cannot serve the model {self._model_path} (parameter model_file_path): {exc}'
            ) from exc
        self._monitors: dict[str, HealthMonitor] = {}
        self._decoder_settings: dict[str, Any] = {}
        self._frame_ids: dict[str, str] = dict.fromkeys(self.modalities, '')
        # (height, width) of each stream's last accepted message: its camera's pixel grid,
        # which a decoded frame need not keep (a polarization mosaic decodes at half size).
        self._image_sizes: dict[str, tuple[int, int]] = {}
        # The latest CameraInfo of each camera, with the (height, width) of the images it
        # describes; kept across deactivate (a driver that publishes it once, latched, does not
        # publish it again to a new volatile subscription).
        self._camera_infos: dict[str, tuple[CameraInfo, tuple[int, int]]] = {}
        self._camera_info_warned: set[str] = set()  # size mismatches said in the log
        self._info_topics: dict[str, str] = {}  # each camera's camera_info topic, remapped
        # Why a sensor may hear nothing: a publisher on its topic with incompatible QoS.
        self._qos_problems: dict[str, str] = {}
        self._qos_seen: set[str] = set()  # problems whose publisher the graph has listed
        self._type_warned: set[str] = set()  # publishers of another type, said in the log
        for modality in self.modalities:
            monitor = HealthMonitor(modality, health_config(self._values, modality))
            if not self._values[sensor_parameter(modality, 'enabled')]:
                monitor.disable()
            self._monitors[modality] = monitor
            self._decoder_settings[modality] = decoder_settings(self._values, modality)
        self._assembler = FrameAssembler(
            self.modalities,
            anchor=self._values['anchor'],
            max_age_s={m: self._values[sensor_parameter(m, 'max_age_s')] for m in self.modalities},
            cache_depth=self._values['cache_depth'],
        )
        self._latency = LatencyWindow()
        self._model = _ModelState()
        self._callback_cpu_s = 0.0
        self._callback_share = RecentShare(time.monotonic())

    def _anchor_problem(self, anchor: str) -> str:
        """Why ``anchor`` cannot work with the loaded model ('' when it can)."""
        choices = [*self.modalities, 'freshest', 'timer']
        if anchor in choices:
            return ''
        return (
            f'anchor {anchor!r}: the model {self._model_path} takes no {anchor} input (it '
            f'takes {"+".join(self.modalities)}); set the parameter anchor to one of {choices}'
        )

    def _warn_of_a_disabled_anchor(self, anchor: str) -> None:
        """A camera disabled (the robot does not have it) never anchors: the freshest usable
        stream does, for good, as it does while the anchor stream is down. Said, since the
        default anchor (rgb) on a robot without RGB started without a word."""
        if anchor in self.modalities and not self._values[sensor_parameter(anchor, 'enabled')]:
            self.get_logger().warning(
                f'anchor {anchor!r}: {sensor_parameter(anchor, "enabled")} is false, so each '
                'output is anchored on the freshest usable stream instead (as anchor freshest '
                'does); set anchor to freshest, timer or an enabled camera to say so'
            )

    def _create_publishers(self) -> None:
        """The outputs; their QoS event handlers in a callback group of their own, new at each
        configure (the managed node's cleanup destroys them: _create_subscriptions says why)."""
        out = output_qos()
        group = MutuallyExclusiveCallbackGroup()

        def create(msg_type, topic: str, qos):
            return self._create_output_publisher(msg_type, topic, qos, group)

        self._pub_labels = create(Image, 'segmentation/labels', out)
        self._pub_color = create(Image, 'segmentation/color', out)
        self._pub_overlay = create(Image, 'segmentation/overlay', out)
        self._pub_confidence = create(Image, 'segmentation/confidence', out)
        self._pub_camera_info = None
        if self._values['publish_camera_info']:
            # image_transport's sibling of the labels' topic as remapped, with their QoS
            # (CameraPublisher's rule): a remap of segmentation/labels moves it along.
            self._pub_camera_info = create(
                CameraInfo, camera_info_topic(self.resolve_topic_name('segmentation/labels')),
                out)
        label_type = LabelInfo if LabelInfo is not None else String
        self._pub_label_info = create(label_type, 'segmentation/label_info', latched_qos())
        self._pub_diagnostics = create(DiagnosticArray, '/diagnostics', output_qos(10))

    def _create_output_publisher(self, msg_type, topic: str, qos, group):
        return self.create_publisher(msg_type, topic, qos, callback_group=group)

    def _create_subscriptions(self) -> None:
        """One subscription per enabled sensor the model takes, with its own QoS.

        They and their event handlers are in a callback group of their own, made afresh at
        each activation: rclpy's groups keep a weak reference to every entity ever added,
        dead or not (ros2/rclpy#1356), and in the node's default group each deactivate left
        12 behind (about 2.4 KiB a cycle, for good)."""
        self._image_subscriptions = {}
        self._info_subscriptions: dict[str, Any] = {}
        self._fields_of: dict[str, Callable[[Any], ImageFields]] = {}
        group = MutuallyExclusiveCallbackGroup()
        for modality in MODALITIES:
            if modality not in self.modalities:
                self.get_logger().warning(
                    f'the model takes no {modality}: its topic is not subscribed'
                )
                continue
            if not self._values[sensor_parameter(modality, 'enabled')]:
                self.get_logger().info(f'{modality} disabled: always masked')
                continue
            qos = subscription_qos(
                self._values[sensor_parameter(modality, 'qos')],
                self._values[sensor_parameter(modality, 'qos_depth')],
            )
            events = SubscriptionEventCallbacks(
                incompatible_qos=lambda info, m=modality: self._on_incompatible_qos(m, info)
            )
            transport = self._values[sensor_parameter(modality, 'transport')]
            topic, message_type = transport_topic(self, f'{modality}/image', transport)
            # a compressed frame naming an encoding the sensor does not take is refused
            # before it is decoded (a raw one is, by decode_frame, before any work)
            self._fields_of[modality] = to_image_fields if transport == 'raw' else partial(
                compressed_image_fields, encodings=MODALITY_INPUTS[modality][1]
            )
            self._image_subscriptions[modality] = self.create_subscription(
                message_type, topic, lambda msg, m=modality: self._on_image(m, msg), qos,
                callback_group=group, event_callbacks=events,
            )
            if self._values['publish_camera_info']:
                # Beside the base image topic as remapped, whatever the transport
                # (image_transport's CameraSubscriber). Best effort: it hears a driver's
                # camera_info whether that is published reliable (CameraPublisher's default) or
                # best effort (sensor data QoS, the image's).
                subscription = self.create_subscription(
                    CameraInfo, camera_info_topic(self.resolve_topic_name(f'{modality}/image')),
                    lambda msg, m=modality: self._on_camera_info(m, msg),
                    subscription_qos('best_effort', 1), callback_group=group,
                )
                self._info_subscriptions[modality] = subscription
                self._info_topics[modality] = subscription.topic_name

    def _on_incompatible_qos(self, modality: str, info) -> None:
        """A publisher on a sensor's topic offers QoS its subscription cannot take: said in
        the log, as rclpy does, and in the sensor's status while nothing arrives."""
        topic = self._image_subscriptions[modality].topic_name
        policy = qos_policy_name_from_kind(info.last_policy_kind)
        setting = self._values[sensor_parameter(modality, 'qos')]
        problem = (
            f'a publisher on {topic} offers incompatible QoS ({policy}), nothing is received '
            f'from it (sensors.{modality}.qos is {setting})'
        )
        with self._lock:
            self._qos_problems[modality] = problem
        self.get_logger().warning(problem)

    def _incompatible_publisher(self, modality: str) -> bool:
        """Whether the graph lists a publisher on a sensor's topic whose QoS its subscription
        cannot take (rclpy tells when one appears, never when it has gone)."""
        subscription = self._image_subscriptions[modality]
        return any(
            qos_check_compatible(info.qos_profile, subscription.qos_profile)[0]
            == QoSCompatibility.ERROR  # pybind11 enum values: not unique objects
            for info in self.get_publishers_info_by_topic(subscription.topic_name)
        )

    def _message_type_problem(self, modality: str) -> str:
        """Why a sensor hears nothing when a publisher on its topic sends another message
        type ('' if none does): DDS never matches the two, and Fast DDS raises no event for it
        (rclpy's incompatible_type callback never runs), so the graph is asked. Logged once
        for each."""
        subscription = self._image_subscriptions.get(modality)
        if subscription is None:
            return ''
        expected = message_type_name(subscription.msg_type)
        others = sorted({
            info.topic_type for info in self.get_publishers_info_by_topic(subscription.topic_name)
        } - {expected})
        if not others:
            return ''
        transport = self._values[sensor_parameter(modality, 'transport')]
        problem = (
            f'a publisher on {subscription.topic_name} sends {", ".join(others)}, not '
            f'{expected}: nothing is received from it (sensors.{modality}.transport is '
            f'{transport})'
        )
        if problem not in self._type_warned:
            self._type_warned.add(problem)
            self.get_logger().warning(problem)
        return problem

    def _parameter_value(self, name: str) -> Any:
        return self._specs[name].plain(self.get_parameter(name).value)

    def _create_backend(self) -> InferenceBackend:
        path = self._values['model_file_path'] or str(
            default_model_path(backend=self._values['backend'])
        )
        self._model_path = path
        # The node's own logger, not one of logging's registry: getLogger keeps every logger
        # for the life of the process, so each node started in it left one behind, and one
        # whose id a later node reused forwarded that node's lines twice.
        logger = logging.Logger('mmp_ros.inference')
        logger.setLevel(logging.INFO)
        logger.propagate = False
        logger.addHandler(_RclpyLogHandler(self))
        try:
            return create_backend(
                self._values['backend'],
                path,
                engine_file_path=self._values['engine_file_path'] or None,
                force_engine_update=self._values['force_engine_update'],
                enable_fp16=self._values['enable_fp16'],
                logger=logger,
            )
        except BackendUnavailableError as exc:
            raise NodeStartError(f"backend {self._values['backend']!r} cannot run here "
                                 f'(parameter backend): {exc}') from exc
        except (InferenceError, MetadataError, OSError, ValueError) as exc:
            raise NodeStartError(f'cannot load the model {path} (parameter model_file_path): '
                                 f'{exc}') from exc

    def _publish_label_info(self) -> None:
        meta = self.metadata
        if LabelInfo is not None:
            msg = LabelInfo(
                class_map=[
                    VisionClass(class_id=i, class_name=name)
                    for i, name in enumerate(meta.class_names)
                ],
                threshold=float(self._values['min_confidence']),
            )
            msg.header.stamp = self.get_clock().now().to_msg()
        else:
            msg = String(data=json.dumps({
                'class_ids': list(range(meta.num_classes)),
                'class_names': list(meta.class_names),
                'palette': [list(c) for c in meta.palette],
                'no_prediction': NO_PREDICTION,
                'threshold': float(self._values['min_confidence']),
                'modalities': list(meta.modalities),
                'method': meta.method,
            }))
        self._pub_label_info.publish(msg)

    # --- sensor callbacks: convert, check, store ---------------------------------------

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _arrival_time(self, now: float) -> float:
        """The time of an arrival or output at node-clock time ``now``, on the clock that
        times them (the sensors' age, staleness and rate, the output rate): on sim time the
        node's clock (a paused simulation makes no sensor stale); on wall time the monotonic
        clock, which a step of the system clock (NTP) does not move. On the system clock a
        step forward of more than ``timeout_s`` made every camera look silent for as long:
        STALE, then masked for ``recovery_frames`` frames ('stale: messages stopped for
        1.04 s' at a 1 s step), and no segmentation published meanwhile."""
        return now if self.get_clock().ros_time_is_active else time.monotonic()

    def _on_image(self, modality: str, msg: Image | CompressedImage) -> None:
        started = time.thread_time()
        now = self._now()
        if now == 0.0:
            # use_sim_time before the first /clock message: there is no time to judge the
            # stamp by (every stamp would be years in the future, and the sensor masked).
            # A /clock that reads 0 (a simulation's first instant) cannot be told from it.
            self.get_logger().warning(
                'use_sim_time is true and the clock reads 0 (nothing has come on /clock yet, '
                'or a simulation at its first instant): sensor frames are ignored until it '
                'moves on (mmp_ros replay --clock HZ publishes it)',
                throttle_duration_sec=5.0,
            )
            return
        arrival = self._arrival_time(now)
        stamp = _stamp_seconds(msg.header)
        try:
            # refused on the size its header declares, before anything of it is decoded
            fields = self._fields_of[modality](
                msg, max_pixels=self._values[sensor_parameter(modality, 'max_pixels')]
            )
            frame = decode_frame(modality, fields, self._decoder_settings[modality])
        except SensorInputError as exc:
            with self._lock:
                self._monitors[modality].observe_error(arrival, str(exc))
                self._assembler.clear(modality)
                self._frame_ids[modality] = msg.header.frame_id
        else:
            with self._lock:
                verdict = self._monitors[modality].observe(
                    stamp, now, frame.stats, sim_time=self.get_clock().ros_time_is_active,
                    arrival=arrival,
                )
                if verdict.accepted:
                    self._assembler.add(modality, stamp, frame, msg.header.frame_id, msg.header)
                    self._image_sizes[modality] = (fields.height, fields.width)
                else:
                    self._assembler.clear(modality)
                self._frame_ids[modality] = msg.header.frame_id
                if modality == self._values['anchor'] and verdict.judged:
                    self._model.anchor_frames += 1
            self._wake.set()
        self._callback_cpu_s += time.thread_time() - started

    def _on_camera_info(self, modality: str, msg: CameraInfo) -> None:
        """Keep a camera's latest CameraInfo, with the size of the images it describes."""
        started = time.thread_time()
        size = described_size(
            msg.height, msg.width, binning_x=msg.binning_x, binning_y=msg.binning_y,
            roi_height=msg.roi.height, roi_width=msg.roi.width,
        )
        with self._lock:
            self._camera_infos[modality] = (msg, size)
        self._callback_cpu_s += time.thread_time() - started

    def _on_time_jump(self, jump: TimeJump) -> None:
        """The clock went back: every stamp from now on would look stale or to go backwards,
        and rates and latencies would span the jump. Health, cached frames and the model's
        figures start afresh, as at start-up, instead of masking every sensor until it has
        recovered. So too when it went forward by more than an enabled sensor's
        ``timeout_s`` (a bag seeked forward, a simulator fast-forwarded): every camera looked
        silent for that long, STALE, then masked for ``recovery_frames`` frames."""
        now_ns, delta_ns = self.get_clock().now().nanoseconds, jump.delta.nanoseconds
        if jump.clock_change == ClockChange.ROS_TIME_NO_CHANGE and delta_ns > 0 and (
                delta_ns == now_ns  # the first /clock: nothing was judged on sim time yet
                or delta_ns * 1e-9 <= min((m.config.timeout_s for m in self._monitors.values()
                                           if m.enabled), default=math.inf)):
            return  # a /clock tick, or a jump no sensor would notice
        # Frames under way at a jump back carry the time before it: not a fault (restart).
        now = now_ns * 1e-9
        jumped_from = (now_ns - delta_ns) * 1e-9 if delta_ns else None
        self._start_afresh(jumped_from, now)
        # A switch of use_sim_time comes with a delta of 0, whatever the two clocks read.
        if jump.clock_change == ClockChange.ROS_TIME_ACTIVATED:  # pybind11 enums: not `is`
            what = 'the clock switched to sim time (/clock)'
        elif jump.clock_change == ClockChange.ROS_TIME_DEACTIVATED:
            what = 'the clock switched to wall time'
        else:
            what = f'the clock jumped by {jump.delta.nanoseconds / 1e9:+.3f} s'
        self.get_logger().info(f'{what}: sensor health and model figures start afresh')

    def _start_afresh(self, jumped_from: float | None = None, now: float | None = None) -> None:
        """Health, cached frames and the model's figures as at start-up (the clock jumped
        back from ``jumped_from`` to ``now``, when given: HealthMonitor.restart)."""
        with self._lock:
            for modality, monitor in self._monitors.items():
                monitor.restart(jumped_from, now)
                self._assembler.clear(modality)
            self._latency = LatencyWindow()
            self._model = _ModelState()

    # --- inference, off the callback path ----------------------------------------------

    def _inference_loop(self, stop: threading.Event) -> None:
        last_run = (-np.inf, -np.inf)  # (monotonic, node clock) of the last run's start
        while not stop.is_set():
            if self._values['anchor'] != 'timer':
                self._wake.wait(0.25)
                self._wake.clear()
            self._wait_for_rate(last_run, stop)
            if stop.is_set():
                break
            last_run = (time.monotonic(), self._now())
            try:
                self._infer_latest(stop)
            except Exception as exc:  # a failed run must not end the worker
                if not self.context.ok():
                    break  # shutting down: publishers are gone
                message = f'{type(exc).__name__}: {exc}'
                with self._lock:
                    self._model.last_error = message
                self.get_logger().error(
                    f'inference failed: {message}', throttle_duration_sec=5.0
                )

    def _wait_for_rate(self, last_run: tuple[float, float], stop: threading.Event) -> None:
        """Wait until ``max_rate_hz`` allows the next run, or the node stops.

        ``last_run``: the last run's start on the monotonic clock and on the node clock. The
        timer anchor's rate is on the node clock, as its stamps are: on ``use_sim_time``, bag
        or simulator time (a bag at ``--rate 0.5`` gave twice the outputs per second of bag
        time on the monotonic clock); a clock gone back is a due run. The node clock's pace
        is unknown then, so the wait is polled. As a cap for frame anchors the rate is the
        monotonic clock's: a bound on the work done.

        The wait is recomputed whenever the rate or the anchor changes at run time: a node
        switched from a very low rate back to a normal one must not sleep out the old period.
        """
        while not stop.is_set():
            rate = self._values['max_rate_hz']
            period = 1.0 / rate if rate > 0 else 0.0
            if self._values['anchor'] == 'timer':
                now = self._now()
                wait = last_run[1] + period - now if now >= last_run[1] else 0.0
                if self.get_clock().ros_time_is_active:
                    wait = min(wait, SIM_TIME_POLL_S)
            else:
                wait = last_run[0] + period - time.monotonic()
            if wait <= 0:
                return
            self._retime.wait(wait)
            self._retime.clear()

    def _infer_latest(self, stop: threading.Event) -> None:
        with self._lock:
            clock_now = self.get_clock().now()
            now = clock_now.nanoseconds * 1e-9
            arrival = self._arrival_time(now)
            usable = {m: mon.status(arrival).usable for m, mon in self._monitors.items()}
            bundle = self._assembler.assemble(usable, now)
            image_sizes = dict(self._image_sizes)
            values = dict(self._values)
            # The figures of this run go where they were taken from: a clock that jumps back
            # while the model runs starts fresh ones (_start_afresh), which a run on frames
            # from before the jump, timed after it, would start with a latency of minus the
            # jump (-3959 ms at a 4 s bag's loop) and an inference that is not theirs.
            latency, state = self._latency, self._model
        if bundle is None:
            return
        frames = {m: stamped.frame for m, stamped in bundle.frames.items()}
        inputs, available = build_inputs(frames, self.metadata)
        labels, confidence = self._backend.infer(inputs, available)
        if stop.is_set():  # stopped meanwhile: not for a later activation (or configuration)
            return
        # The resolution of the camera whose frame_id the outputs carry: labels at one
        # camera's size under another's frame would not line up with either.
        size = image_sizes[bundle.camera]
        seg = to_camera_resolution(
            labels[0], confidence[0], size, num_classes=self.metadata.num_classes,
            min_confidence=values['min_confidence'],
        )
        header = bundle.header
        if header is None:  # the timer anchor: the instant the frames were matched at
            header = Header(frame_id=bundle.frame_id, stamp=clock_now.to_msg())
        self._publish_image(self._pub_labels, seg.labels, 'mono8', header)
        published_at = self._now()
        camera_info = self._publish_camera_info(bundle.camera, size, header)
        marks = modality_marks(self.modalities, available[0], self.metadata.method)
        color = None
        if values['publish_color'] and self._pub_color.get_subscription_count():
            color = colorize(seg.labels, self._palette)
            self._publish_image(self._pub_color, color, 'rgb8', header)
        if values['publish_overlay'] and self._pub_overlay.get_subscription_count():
            color = colorize(seg.labels, self._palette) if color is None else color
            background = visualize(best_background(frames, OVERLAY_PREFERENCE))
            image = overlay(background, color, marks, alpha=values['overlay_alpha'])
            self._publish_image(self._pub_overlay, image, 'rgb8', header)
        if values['publish_confidence'] and self._pub_confidence.get_subscription_count():
            self._publish_image(self._pub_confidence, seg.confidence, '32FC1', header)
        elapsed = published_at - bundle.stamp
        if self.get_clock().ros_time_is_active:
            # The node's sim time is the last /clock tick, up to a tick behind the bag's or
            # simulator's: a frame segmented before the next tick read minus its distance to
            # the last one. The reading is a lower bound; so is zero.
            elapsed = max(0.0, elapsed)
        with self._lock:
            latency.add(elapsed)
            state.inferences += 1
            if bundle.anchor == values['anchor'] != ANCHOR_TIMER:  # on an anchor frame
                state.anchored += 1
            state.last_mask = ' '.join(f'{m}={mark}' for m, mark in marks.items())
            state.last_missing = dict(bundle.missing)
            state.last_error = ''
            state.camera_info = camera_info
            state.outputs.add(self._arrival_time(published_at))
        self._log_bundle(bundle)

    def _publish_camera_info(self, camera: str, size: tuple[int, int], header: Header) -> str:
        """Publish ``camera``'s latest CameraInfo under the labels' ``header`` when someone
        subscribes and it describes images of the labels' ``size``; what became of it, for the
        model's status. A size mismatch is also logged, once for each."""
        if self._pub_camera_info is None:
            return 'off (publish_camera_info false)'
        if not self._pub_camera_info.get_subscription_count():
            return 'no subscriber'
        with self._lock:
            topic = self._info_topics.get(camera, f'{camera}/camera_info')
            known = self._camera_infos.get(camera)
        if known is None:
            return f'none: nothing received on {topic}'
        info, described = known
        problem = size_problem(topic, described, size)
        if problem:
            if problem not in self._camera_info_warned:
                self._camera_info_warned.add(problem)
                self.get_logger().warning(problem)
            return f'none: {problem}'
        self._pub_camera_info.publish(CameraInfo(
            header=Header(stamp=header.stamp, frame_id=header.frame_id),
            height=info.height, width=info.width, distortion_model=info.distortion_model,
            d=info.d, k=info.k, r=info.r, p=info.p, binning_x=info.binning_x,
            binning_y=info.binning_y, roi=info.roi,
        ))
        return f'{camera} ({topic})'

    def _publish_image(self, publisher, array: np.ndarray, encoding: str, header: Header):
        fields = array_to_image(array, encoding)
        publisher.publish(to_image_msg(fields, stamp=header.stamp, frame_id=header.frame_id))

    def _log_bundle(self, bundle: FrameBundle) -> None:
        if bundle.missing and self._may_log():
            reasons = '; '.join(f'{m}: {why}' for m, why in bundle.missing.items())
            self.get_logger().info(
                f'inferring without {reasons}', throttle_duration_sec=10.0
            )

    # --- health and diagnostics --------------------------------------------------------

    def _health_loop(self, stop: threading.Event) -> None:
        period = self._values['health_check_period_s']
        while not stop.wait(period):
            try:
                self._check_health()
            except Exception as exc:  # diagnostics must outlive a bad status
                if not self.context.ok():
                    break
                self.get_logger().error(
                    f'health check failed: {type(exc).__name__}: {exc}',
                    throttle_duration_sec=5.0,
                )

    def _check_health(self) -> None:
        with self._lock:
            clock_now = self._now()
            now = self._arrival_time(clock_now)
            statuses = {m: mon.status(now) for m, mon in self._monitors.items()}
            frame_ids = dict(self._frame_ids)
            qos_problems = dict(self._qos_problems)
            model_level, model_message, model_values = self._model_report(
                now, statuses, clock_now)
        key = tuple((s.level, s.state) for s in statuses.values()) + (
            model_level, tuple(s.usable for s in statuses.values()),
        )
        wall = time.monotonic()
        if key == self._last_diagnostics_key and wall < self._next_diagnostics:
            return
        self._last_diagnostics_key = key
        self._next_diagnostics = wall + self._values['diagnostics_period_s']
        for modality in list(qos_problems):
            # The event can come before the graph lists the publisher: a problem goes once its
            # publisher has been seen there and is gone.
            if self._incompatible_publisher(modality):
                self._qos_seen.add(modality)
            elif modality in self._qos_seen:
                self._qos_seen.discard(modality)
                with self._lock:
                    self._qos_problems.pop(modality, None)
                del qos_problems[modality]
        type_problems = {
            m: self._message_type_problem(m) for m, status in statuses.items()
            if status.state in (SensorState.NEVER_SEEN, SensorState.STALE)
        }
        node = status_node(self.get_name(), self.get_namespace())
        messages = [
            sensor_status(node, statuses[m], frame_ids[m], qos_problems.get(m, ''),
                          type_problems.get(m, ''))
            if m in statuses else not_in_model_status(node, m)
            for m in MODALITIES
        ]
        # hardware_id: the node's fully qualified name, also in the root namespace.
        messages.append(make_status(node, MODEL_STATUS, model_level, model_message,
                                    self.get_fully_qualified_name(), model_values))
        self._pub_diagnostics.publish(
            diagnostic_array(self.get_clock().now().to_msg(), messages)
        )

    def _model_report(
        self, now: float, statuses: dict[str, HealthStatus], clock_now: float
    ) -> tuple[Level, str, dict[str, str]]:
        """The model's diagnostic status (called with the lock held; ``now`` on the clock of
        arrivals and outputs, :meth:`_arrival_time`, ``clock_now`` on the node's)."""
        state = self._model
        p50, p95 = self._latency.percentile(50), self._latency.percentile(95)
        cpu_share = self._callback_share.update(time.monotonic(), self._callback_cpu_s)
        values = {
            'backend': self._backend.name,
            'device': self._backend.device,
            'method': self.metadata.method,
            'latency_p50_ms': 'n/a' if p50 is None else f'{p50 * 1e3:.1f}',
            'latency_p95_ms': 'n/a' if p95 is None else f'{p95 * 1e3:.1f}',
            'mask': state.last_mask or 'none yet',
            'inferences': str(state.inferences),
            'anchor_frames': str(state.anchor_frames),
            'anchor_frames_dropped': str(max(0, state.anchor_frames - state.anchored)),
            'output_rate_hz': f'{state.outputs.rate(now):.2f}',
            'camera_info': state.camera_info or 'none yet',
            'callback_cpu_share': f'{cpu_share:.4f}',
        }
        usable = [m for m, s in statuses.items() if s.usable]
        if not usable:
            reasons = '; '.join(
                f'{m}: {s.message}' for m, s in statuses.items()
                if s.state is not SensorState.DISABLED
            )
            return Level.ERROR, f'no usable sensor, no segmentation published ({reasons})', values
        if state.last_error:
            return Level.ERROR, f'inference failing: {state.last_error}', values
        # The timer anchor's instants have matched no frame for longer than a sensor may be
        # silent: nothing is published. (A slow camera missed by every other instant is not.)
        unmatched_s = clock_now - self._assembler.unmatched_since
        if self._assembler.unmatched and unmatched_s > max(
                self._monitors[m].config.timeout_s for m in self._assembler.unmatched):
            reasons = '; '.join(f'{m}: {why}' for m, why in self._assembler.unmatched.items()
                                if statuses[m].state is not SensorState.DISABLED)
            return Level.ERROR, (
                'no frame within its max_age_s of the timer anchor\'s instant, no segmentation '
                f'published ({reasons})'), values
        if state.inferences == 0:
            return Level.WARN, 'waiting for the first bundle', values
        masked = [
            m for m, s in statuses.items() if not s.usable and s.state is not SensorState.DISABLED
        ]
        # Healthy, but left out of the last bundle: no frame within max_age_s of the anchor.
        unmatched = {
            m: why for m, why in state.last_missing.items()
            if m not in masked and statuses[m].usable
        }
        if masked or unmatched:
            how = substitution(self.metadata.method)
            message = f'degraded: {", ".join([*masked, *unmatched])} {how}'
            if unmatched:
                message += ' (' + '; '.join(f'{m}: {why}' for m, why in unmatched.items()) + ')'
            return Level.WARN, message, values
        return Level.OK, f'running on {"+".join(usable)}', values

    # --- run-time parameter changes ----------------------------------------------------

    def _on_set_parameters(self, parameters) -> SetParametersResult:
        changes = {}
        for parameter in parameters:
            if parameter.name not in self._specs:
                # One rclpy declares for every node (use_sim_time, qos_overrides.*): its own
                # callbacks take it; a name declared by no one never gets this far.
                continue
            changes[parameter.name] = self._specs[parameter.name].plain(parameter.value)
        fixed = [name for name in changes if self._specs[name].read_only]
        if fixed and self._configured:  # the managed node's: rclpy refuses the plain node's
            return SetParametersResult(successful=False, reason=(
                f'{", ".join(fixed)}: read by configure, settable only while the node is '
                f'unconfigured (ros2 lifecycle set {self.get_fully_qualified_name()} '
                f'{self._reconfigure_steps()})'))
        merged = {**self._values, **changes}
        try:
            validate(merged)
            problem = self._anchor_problem(changes['anchor']) if (
                'anchor' in changes and self._configured) else ''
            if problem:
                raise ParameterError(problem)
        except ParameterError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        if not self._configured:  # unconfigured (managed node): the next configure reads it
            self._values = merged
            return SetParametersResult(successful=True)
        with self._lock:
            self._values = merged
            self._apply(changes)
        if 'anchor' in changes:
            self._warn_of_a_disabled_anchor(changes['anchor'])
        self._wake.set()
        self._retime.set()
        return SetParametersResult(successful=True)

    def _apply(self, changes: dict[str, Any]) -> None:
        """Make validated changes take effect (called with the lock held)."""
        if 'anchor' in changes:
            self._assembler.set_anchor(changes['anchor'])
        for modality in self.modalities:
            names = {n.rsplit('.', 1)[1] for n in changes if n.startswith(f'sensors.{modality}.')}
            if names & set(HEALTH_FIELDS):
                self._monitors[modality].reconfigure(
                    **{f: self._values[sensor_parameter(modality, f)] for f in HEALTH_FIELDS}
                )
            if 'max_age_s' in names:
                self._assembler.set_max_age(
                    {modality: self._values[sensor_parameter(modality, 'max_age_s')]}
                )
            if names & {s.name for s in DECODER_PARAMETERS.get(modality, ())}:
                self._decoder_settings[modality] = decoder_settings(self._values, modality)
        if 'min_confidence' in changes:
            self._publish_label_info()

    # --- shutdown ----------------------------------------------------------------------

    def destroy_node(self) -> None:
        """Stop the worker before the node goes, so it never publishes on a dead node."""
        self._release()
        super().destroy_node()


class SegmentationNode(SegmentationCore, Node):
    """Subscribes to the four sensors, publishes segmentation, label info and diagnostics:
    configured and active from its construction on."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self._init_core()
        try:
            self._declare()
            self._configure()
            self._activate()
        except BaseException:
            self.destroy_node()
            raise


class ManagedSegmentationNode(SegmentationCore, LifecycleNode):
    """The segmentation node as a managed (lifecycle) node, for lifecycle managers and
    ``ros2 lifecycle set``; docs/node.md says what each transition does.

    It starts unconfigured, with its parameters declared (and a value given at start that is
    invalid refused, as by the plain node) and nothing loaded. configure: the parameters'
    values, the model, the publishers (lifecycle publishers: they drop what is published
    while the node is not active); a model or parameter problem fails the transition with its
    reason logged, and the node stays unconfigured. activate: label info, the sensor
    subscriptions and the worker threads, sensor health starting afresh. deactivate: the
    threads stop, the subscriptions go, one last /diagnostics says so, and nothing more is
    published. cleanup: the publishers and the backend go, so that configure can run again
    (the parameters stay declared, with their values; those the plain node takes only at
    start can be set while unconfigured). shutdown: whatever of that applies.
    """

    INACTIVE = 'inactive (lifecycle): sensors not subscribed, nothing published until activated'

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self._init_core()
        self._image_subscriptions: dict[str, Any] = {}
        self._info_subscriptions: dict[str, Any] = {}
        self._lifecycle_publishers: list[Any] = []
        try:
            self._declare()
        except BaseException:
            self.destroy_node()
            raise

    def _descriptor(self, spec: ParameterSpec) -> ParameterDescriptor:
        """A parameter fixed at the plain node's start is read by configure here: settable
        while unconfigured, so that a lifecycle reconfigure (cleanup, set, configure) can
        change it, and refused by _on_set_parameters once configured."""
        desc = descriptor(spec)
        if spec.read_only:
            desc.read_only = False
            desc.description += ' Settable only while unconfigured (managed node).'
        return desc

    def _reconfigure_steps(self) -> str:
        """The transitions around setting a parameter configure reads, from the state the
        node is in: inactive, cleanup alone (deactivate is no transition from there)."""
        if self._state_machine.current_state[1] == 'inactive':
            return 'cleanup; set it; configure'
        return 'deactivate, cleanup; set it; configure, activate'

    def _create_output_publisher(self, msg_type, topic: str, qos, group):
        publisher = self.create_lifecycle_publisher(msg_type, topic, qos, callback_group=group)
        self._lifecycle_publishers.append(publisher)
        return publisher

    # --- transitions -------------------------------------------------------------------

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._configure()
        except NodeStartError as exc:  # the user's to fix: the reason, and unconfigured
            self.get_logger().error(f'cannot configure: {exc}')
            self._cleanup()
            return TransitionCallbackReturn.FAILURE
        except Exception as exc:  # rclpy turns it into ERROR without a word
            self.get_logger().error(f'configure failed: {type(exc).__name__}: {exc}')
            return TransitionCallbackReturn.ERROR
        self.get_logger().info('configured, inactive: activate it to segment')
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = super().on_activate(state)  # enables the lifecycle publishers
        if result != TransitionCallbackReturn.SUCCESS:
            return result
        return self._guarded('activate', self._resume)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = self._guarded('deactivate', self._pause)
        if result != TransitionCallbackReturn.SUCCESS:
            return result
        return super().on_deactivate(state)  # disables them

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = self._guarded('cleanup', self._cleanup)
        if result != TransitionCallbackReturn.SUCCESS:
            return result
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = self._guarded('shutdown', self._tear_down)
        self.get_logger().info('finalized: everything released; the process runs until stopped')
        return result

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        # A transition raised: release everything and go back to unconfigured.
        return self._guarded('error processing', self._tear_down)

    def _guarded(self, what: str, action: Callable[[], None]) -> TransitionCallbackReturn:
        try:
            action()
        except Exception as exc:  # rclpy turns it into ERROR without a word
            self.get_logger().error(f'{what} failed: {type(exc).__name__}: {exc}')
            return TransitionCallbackReturn.ERROR
        return TransitionCallbackReturn.SUCCESS

    # --- what they do ------------------------------------------------------------------

    def _resume(self) -> None:
        self._start_afresh()
        self._activate()
        self.get_logger().info('active: segmenting')

    def _pause(self) -> None:
        running = self._stop_threads()
        if running:
            self.get_logger().warning(
                f'{", ".join(running)} still running {self.JOIN_TIMEOUT_S:g} s after the stop; '
                'what it publishes is dropped')
        for subscription in [*self._image_subscriptions.values(),
                             *self._info_subscriptions.values()]:
            self.destroy_subscription(subscription)
        self._image_subscriptions = {}
        self._info_subscriptions = {}
        with self._lock:
            self._qos_problems.clear()
            self._qos_seen.clear()
        self._publish_inactive_diagnostics()
        self.get_logger().info('inactive: sensors unsubscribed, nothing published')

    def _publish_inactive_diagnostics(self) -> None:
        """One last /diagnostics: every status says the node is inactive, not failing."""
        node = status_node(self.get_name(), self.get_namespace())
        values = {'lifecycle_state': 'inactive'}
        messages = [
            make_status(node, m, Level.OK, self.INACTIVE, self._frame_ids.get(m, ''), values)
            for m in MODALITIES
        ]
        messages.append(make_status(node, MODEL_STATUS, Level.OK, self.INACTIVE,
                                    self.get_fully_qualified_name(), values))
        self._pub_diagnostics.publish(
            diagnostic_array(self.get_clock().now().to_msg(), messages)
        )

    def _cleanup(self) -> None:
        """Everything configure made but the declared parameters: configure can run again."""
        self._release()
        for publisher in self._lifecycle_publishers:
            self.destroy_lifecycle_publisher(publisher)
        self._lifecycle_publishers = []
        self._configured = False

    def _tear_down(self) -> None:
        """From whichever state: deactivate if active, then clean up."""
        if self._image_subscriptions or any(t.is_alive() for t in self._threads):
            self._pause()
        self._cleanup()

    def destroy_node(self) -> None:
        """The worker threads stop before anything of the node goes (the sensor
        subscriptions with the rest), and the lifecycle state machine goes with the node:
        rclpy leaves it (and its transition-event publisher) to the garbage collector, which
        at exit may come after the context's own teardown."""
        super().destroy_node()
        self._state_machine.destroy_when_not_in_use()


def main(
    args: Sequence[str] | None = None, *, dds_profile: bool = True, managed: bool = False
) -> int:
    """Console entry ``mmp_segmentation_node``: run until Ctrl-C, SIGTERM or shutdown.
    ``managed``: the :class:`ManagedSegmentationNode`, which starts unconfigured."""
    from mmp_ros.ros.context import RosInitError, init_ros, node_name_rule, non_ros_arguments

    try:
        # rclpy passes over what is not a ROS argument: 'mmp_segmentation_node -p
        # max_rate_hz:=5.0' (no --ros-args) ran on the default without a word.
        extra = non_ros_arguments(sys.argv if args is None else args)
        if extra:
            raise NodeStartError(
                f'unknown arguments {extra}: the node takes ROS arguments alone, after '
                '--ros-args (--ros-args -p NAME:=VALUE, -r FROM:=TO, --params-file FILE)')
        with init_ros(args, dds_profile=dds_profile) as setup:
            node = ManagedSegmentationNode() if managed else SegmentationNode()
            try:
                if node._may_log():
                    node.get_logger().info(setup.describe())
                if managed and node._may_log():
                    node.get_logger().info(
                        'managed node, unconfigured: configure and activate it (ros2 lifecycle '
                        f'set {node.get_fully_qualified_name()} configure, then activate)'
                    )
                spin_until_shutdown(node)
            finally:
                node.destroy_node()
    except (NodeStartError, RosInitError) as exc:
        name = node_name_rule(sys.argv if args is None else args, NODE_NAME)
        print(f'[{name}] cannot start: {exc}', file=sys.stderr)
        return 1
    return 0


def managed_main(args: Sequence[str] | None = None, *, dds_profile: bool = True) -> int:
    """Console entry ``mmp_segmentation_managed_node``: the managed node until stopped."""
    return main(args, dds_profile=dds_profile, managed=True)


if __name__ == '__main__':
    sys.exit(main())
