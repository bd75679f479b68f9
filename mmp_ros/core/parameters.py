"""The node's parameters, declared once: name, default, description, range, mutability.

The node declares exactly these (with descriptors built from them), ``config/
mmp_segmentation.yaml`` sets exactly these (a test checks both directions), and
:func:`validate` checks a full set of values at start and every run-time change, with
errors that name the parameter and the accepted range. Nothing here imports rclpy.
"""

from __future__ import annotations

import difflib
import math
import re
from array import array
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import astuple, dataclass
from dataclasses import fields as dataclass_fields
from pathlib import Path
from typing import Any

import yaml

from mmp_ros.core.assembler import ANCHOR_FRESHEST, ANCHOR_TIMER
from mmp_ros.core.health import HealthConfig
from mmp_ros.modalities import MODALITIES
from mmp_ros.sensors import (
    DepthSettings,
    ModalitySettings,
    PlanckCalibration,
    PolarizationSettings,
    SensorInputError,
    ThermalSettings,
)
from mmp_ros.sensors.compressed import TRANSPORTS
from mmp_ros.sensors.image import MAX_PIXELS
from mmp_ros.sensors.polarization import IMX250MZR
from mmp_ros.sensors.polarization import RESOLUTIONS as POLARIZATION_RESOLUTIONS
from mmp_ros.sensors.thermal import SEMANTICS as THERMAL_SEMANTICS
from mmp_ros.sensors.thermal import UNITS as THERMAL_UNITS

NODE_NAME = 'mmp_segmentation'
BACKENDS = ('auto', 'onnxruntime', 'torch', 'tensorrt')
QOS_PROFILES = ('sensor_data', 'reliable', 'best_effort')
SENSOR_PREFIX = 'sensors'
# 4096 x 4096: above a 4K UHD camera (8.3 Mpx) and 12 MP machine-vision and polarization
# sensors (IMX253MZR: 12.4 Mpx); a quarter of the decoders' own limit (MAX_PIXELS)
DEFAULT_MAX_PIXELS = 1 << 24

Value = bool | int | float | str | list[int]


class ParameterError(ValueError):
    """A parameter value is invalid; the message names the parameter and what is accepted."""


@dataclass(frozen=True)
class ParameterSpec:
    """One parameter: everything needed to declare it, document it and validate it."""

    name: str
    default: Value
    description: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None
    read_only: bool = False  # fixed at start (model, subscriptions)

    @property
    def is_float_list(self) -> bool:
        return isinstance(self.default, list) and any(isinstance(v, float) for v in self.default)

    def plain(self, value: Any) -> Any:
        """``value`` as this table holds it: rclpy gives an array type as ``array.array``."""
        if isinstance(self.default, list):
            return [(float if self.is_float_list else int)(v) for v in value]
        return value

    @property
    def expected_type(self) -> str:
        """This parameter's type in words, for messages that refuse a value of another."""
        if isinstance(self.default, list):
            return 'a list of numbers' if self.is_float_list else 'a list of integers'
        return _EXPECTED[type(self.default)]

    def type_problem(self, value: Any) -> str:
        """Why ``value`` is of the wrong type for this parameter ('' when it is not), naming
        the parameter, the type it takes and the type given, in words. A whole number is a
        number, as the node takes it for a float parameter."""
        kind = type(self.default)
        if kind is list:
            item = (float, int) if self.is_float_list else int
            if isinstance(value, (list, tuple, array)) and all(
                isinstance(v, item) and not isinstance(v, bool) for v in value
            ):
                return ''
        elif type(value) is kind or (
            kind is float and isinstance(value, int) and not isinstance(value, bool)
        ):
            return ''
        if isinstance(value, array):
            value = value.tolist()
        given = 'no value' if value is None else f'{_kind(value)} {value!r}'
        return f'{self.name} must be {self.expected_type}, got {given}'

    def check(self, value: Any) -> None:
        """Raise :class:`ParameterError` unless ``value`` fits this parameter."""
        problem = self.type_problem(value)
        if problem:
            raise ParameterError(problem)
        kind = type(self.default)
        if kind is float:
            value = float(value)
        if kind is list and self.is_float_list and not all(math.isfinite(v) for v in value):
            raise ParameterError(f'{self.name} must be a list of finite numbers, got {value!r}')
        if kind is float and not math.isfinite(value):
            raise ParameterError(f'{self.name} must be finite, got {value!r}')
        if self.minimum is not None and value < self.minimum:
            raise ParameterError(f'{self.name}={value!r} is below its minimum {self.minimum:g}')
        if self.maximum is not None and value > self.maximum:
            raise ParameterError(f'{self.name}={value!r} is above its maximum {self.maximum:g}')
        if self.choices is not None and value not in self.choices:
            raise ParameterError(f'{self.name}={value!r} is not one of {list(self.choices)}')


# Python types in words: (a value of it, values of it).
_KINDS: dict[type, tuple[str, str]] = {
    bool: ('a boolean', 'booleans'),
    int: ('an integer', 'integers'),
    float: ('a floating-point number', 'floating-point numbers'),
    str: ('a string', 'strings'),
    bytes: ('bytes', 'bytes'),
}
# What a parameter takes, by the type of its default: an integer is a number too.
_EXPECTED: dict[type, str] = {
    bool: 'true or false', int: 'an integer', float: 'a number', str: 'a string',
}


def type_in_words(kind: type, *, array: bool = False) -> tuple[str, str]:
    """(what a parameter of type ``kind`` takes, a value of it) in words; of a list of them
    with ``array``: ('true or false', 'a boolean'), ('a list of numbers', 'a list of
    floating-point numbers')."""
    if array:
        values = f'a list of {_KINDS[kind][1]}'
        return 'a list of numbers' if kind is float else values, values
    return _EXPECTED.get(kind, _KINDS[kind][0]), _KINDS[kind][0]


def _kind(value: Any) -> str:
    """The type of a parameter value in words: 'a string', 'a list of integers'."""
    if isinstance(value, (list, tuple)):
        kinds = {type(v) for v in value}
        if len(kinds) == 1 and kinds <= set(_KINDS):
            return f'a list of {_KINDS[kinds.pop()][1]}'
        return 'a list'
    return _KINDS.get(type(value), (f'a {type(value).__name__}',))[0]


_H = HealthConfig()

NODE_PARAMETERS: tuple[ParameterSpec, ...] = (
    ParameterSpec('backend', 'auto', 'Inference backend; auto picks the fastest that works '
                  'here (tensorrt, then onnxruntime) and logs which.',
                  choices=BACKENDS, read_only=True),
    ParameterSpec('model_file_path', '', 'Exported ONNX model (or a checkpoint for the torch '
                  "backend); empty: the model shipped in the package's models/ folder.",
                  read_only=True),
    ParameterSpec('engine_file_path', '', 'TensorRT engine cache; empty: beside the ONNX '
                  'file. Rebuilt when the ONNX, TensorRT or GPU changes.', read_only=True),
    ParameterSpec('force_engine_update', False, 'Rebuild the TensorRT engine even when the '
                  'cached one matches.', read_only=True),
    ParameterSpec('enable_fp16', True, 'Build the TensorRT engine with FP16 kernels.',
                  read_only=True),
    ParameterSpec('anchor', 'rgb', 'Stream whose frames set the output stamp: a modality '
                  "(the freshest usable stream takes over while it is down), 'freshest', or "
                  "'timer' (inference at max_rate_hz on the node clock).",
                  choices=(*MODALITIES, ANCHOR_FRESHEST, ANCHOR_TIMER)),
    ParameterSpec('max_rate_hz', 0.0, 'Upper bound on inferences per second (the timer '
                  "anchor's rate); 0: as fast as anchor frames arrive. Frames beyond what "
                  'the model keeps up with are dropped, never queued.',
                  minimum=0.0, maximum=1000.0),
    ParameterSpec('min_confidence', 0.0, 'Pixels whose confidence is below this (or not a '
                  'number) get label 255 (no prediction).', minimum=0.0, maximum=1.0),
    ParameterSpec('overlay_alpha', 0.5, 'Weight of the palette colours in the overlay.',
                  minimum=0.0, maximum=1.0),
    ParameterSpec('publish_color', True, 'Publish segmentation/color.'),
    ParameterSpec('publish_overlay', True, 'Publish segmentation/overlay.'),
    ParameterSpec('publish_confidence', True, 'Publish segmentation/confidence.'),
    ParameterSpec('publish_camera_info', True, "Subscribe to each camera's camera_info "
                  '(beside its image topic) and publish segmentation/camera_info with '
                  'the labels: the CameraInfo of the camera whose grid they are on, under '
                  'their header, when it describes images of their size.',
                  read_only=True),
    ParameterSpec('health_check_period_s', 0.02, 'How often sensor health is evaluated; a '
                  'change of level is published on /diagnostics at once.',
                  minimum=0.005, maximum=1.0, read_only=True),
    ParameterSpec('diagnostics_period_s', 1.0, 'Period of the regular /diagnostics message.',
                  minimum=0.05, maximum=60.0, read_only=True),
    ParameterSpec('cache_depth', 5, 'Frames kept per modality to match stamps against the '
                  'anchor.', minimum=1, maximum=100, read_only=True),
)

SENSOR_PARAMETERS: tuple[ParameterSpec, ...] = (
    ParameterSpec('enabled', True, 'Subscribe to this sensor; a disabled sensor is always '
                  'masked and reported OK (the robot does not have it).', read_only=True),
    ParameterSpec('qos', 'sensor_data', 'Subscription QoS: sensor_data (best effort, '
                  'volatile: what camera drivers publish), reliable, or best_effort.',
                  choices=QOS_PROFILES, read_only=True),
    ParameterSpec('qos_depth', 1, 'Subscription queue depth. 1: only the newest frame '
                  'waits for its callback, so a busy node drops old frames instead of queueing '
                  'them (docs/performance.md).', minimum=1, maximum=100, read_only=True),
    ParameterSpec('transport', 'raw', 'How the images arrive (image_transport): raw '
                  '(sensor_msgs/Image on <m>/image), compressed (sensor_msgs/CompressedImage, '
                  'JPEG, PNG or TIFF, on <m>/image/compressed) or, for depth only, '
                  'compressedDepth (on depth/image/compressedDepth).', choices=TRANSPORTS,
                  read_only=True),
    ParameterSpec('max_pixels', DEFAULT_MAX_PIXELS, 'Largest frame (width * height) taken '
                  'from this sensor; a larger one is refused (INVALID, with the size in '
                  '/diagnostics) before it is decoded: a corrupt or hostile header costs no '
                  "more than a frame of this size. Default 4096 x 4096; set it a little above "
                  "the camera's own size to bound a bad frame to the cost of a good one.",
                  minimum=1, maximum=MAX_PIXELS),
    ParameterSpec('max_age_s', 0.1, 'Largest stamp difference from the anchor for a frame '
                  'to be used.', minimum=0.001, maximum=10.0),
    ParameterSpec('timeout_s', _H.timeout_s, 'No message for this long: STALE, masked.',
                  minimum=0.01, maximum=60.0),
    ParameterSpec('expected_rate_hz', _H.expected_rate_hz, 'Nominal rate of the stream; 0 '
                  'disables the rate check.', minimum=0.0, maximum=1000.0),
    ParameterSpec('rate_window_s', _H.rate_window_s, 'Window over which the rate is '
                  'measured.', minimum=0.1, maximum=60.0),
    ParameterSpec('rate_warn_ratio', _H.rate_warn_ratio, 'Measured/expected rate below '
                  'this: WARN.', minimum=0.01, maximum=1.0),
    ParameterSpec('rate_error_ratio', _H.rate_error_ratio, 'Measured/expected rate below '
                  'this: ERROR (frames are still used).', minimum=0.01, maximum=1.0),
    ParameterSpec('future_tolerance_s', _H.future_tolerance_s, 'A stamp further ahead of '
                  'the node clock than this is an ERROR.', minimum=0.0, maximum=60.0),
    ParameterSpec('frozen_frames', _H.frozen_frames, 'This many identical frames in a row: '
                  'FROZEN, masked.', minimum=2, maximum=10000),
    ParameterSpec('frozen_max_difference', _H.frozen_max_difference, 'Mean absolute '
                  'difference of 16x16 thumbnails (in the representation\'s units) up to '
                  'which two frames count as identical; 0: only identical ones. Keep it below '
                  'the sensor\'s noise averaged over a thumbnail cell, or a live camera facing '
                  'a still scene is FROZEN (docs/node.md).', minimum=0.0, maximum=1000.0),
    ParameterSpec('invalid_warn_fraction', _H.invalid_warn_fraction, 'Share of invalid '
                  'pixels (depth: NaN, 0, Inf) from which the sensor is WARN.',
                  minimum=0.0, maximum=1.0),
    ParameterSpec('invalid_error_fraction', _H.invalid_error_fraction, 'Share of invalid '
                  'pixels from which a frame is rejected (ERROR, masked).',
                  minimum=0.0, maximum=1.0),
    ParameterSpec('recovery_frames', _H.recovery_frames, 'Consecutive good frames before a '
                  'masked sensor is used again.', minimum=1, maximum=10000),
)

# Decoder settings (mmp_ros.sensors), only for the modality they belong to.
DECODER_PARAMETERS: dict[str, tuple[ParameterSpec, ...]] = {
    'depth': (
        ParameterSpec('min_m', 0.0, 'Depth readings nearer than this (metres) are invalid.',
                      minimum=0.0, maximum=1000.0),
        ParameterSpec('max_m', 0.0, 'Depth readings farther than this (metres) are invalid '
                      "(the sensor's rated range); 0: no limit.", minimum=0.0, maximum=1000.0),
    ),
    'thermal': (
        ParameterSpec('semantics', 'planck', 'What thermal pixels hold: planck (radiometric '
                      'counts, default calibration: what the scene generator renders), '
                      'counts_linear (T = gain * counts + offset, in unit), centikelvin, '
                      'celsius or kelvin (32FC1/64FC1).',
                      choices=tuple(THERMAL_SEMANTICS)),
        ParameterSpec('gain', 0.04, 'counts_linear: degrees per count (FLIR TLinear high '
                      'resolution: 0.04).', minimum=-1e6, maximum=1e6),
        ParameterSpec('offset', 0.0, 'counts_linear: temperature at zero counts, in unit.',
                      minimum=-1e6, maximum=1e6),
        ParameterSpec('unit', 'kelvin', 'counts_linear: unit of gain and offset.',
                      choices=THERMAL_UNITS),
        ParameterSpec('planck', list(astuple(PlanckCalibration())), "planck: the camera's "
                      'radiometric calibration [R1, R2, B, F, O] (exiftool -PlanckR1 -PlanckR2 '
                      '-PlanckB -PlanckF -PlanckO on one of its radiometric images), each with a '
                      'decimal point (ROS refuses a list mixing 1428 and 0.0466); default: '
                      "typical FLIR values, the scene generator's."),
    ),
    'polarization': (
        ParameterSpec('layout', [a for row in IMX250MZR for a in row], 'Polarizer angles '
                      '(degrees) of the 2x2 mosaic block, row-major; Sony IMX250MZR: '
                      '[90, 45, 135, 0].'),
        ParameterSpec('resolution', 'half', 'Output grid of the mosaic decoder: half (one '
                      'pixel per 2x2 block), quarter, or full (demosaiced).',
                      choices=POLARIZATION_RESOLUTIONS),
    ),
}

HEALTH_FIELDS = tuple(
    s.name for s in SENSOR_PARAMETERS if s.name in HealthConfig.__dataclass_fields__
)


def sensor_parameter(modality: str, name: str) -> str:
    return f'{SENSOR_PREFIX}.{modality}.{name}'


def transports(modality: str) -> tuple[str, ...]:
    """The image_transport transports a sensor can be read through: compressedDepth is
    depth's alone (it carries 16UC1 or 32FC1 depth only)."""
    return TRANSPORTS if modality == 'depth' else tuple(
        t for t in TRANSPORTS if t != 'compressedDepth'
    )


def all_parameters(modalities: Sequence[str] = MODALITIES) -> dict[str, ParameterSpec]:
    """Every parameter of the node, by full name."""
    specs = {s.name: s for s in NODE_PARAMETERS}
    for modality in modalities:
        for spec in (*SENSOR_PARAMETERS, *DECODER_PARAMETERS.get(modality, ())):
            full = sensor_parameter(modality, spec.name)
            choices = transports(modality) if spec.name == 'transport' else spec.choices
            specs[full] = ParameterSpec(
                full, spec.default, f'{modality}: {spec.description}', spec.minimum,
                spec.maximum, choices, spec.read_only,
            )
    return specs


def validate(values: Mapping[str, Any], modalities: Sequence[str] = MODALITIES) -> None:
    """Check a set of values (any subset of the parameters), including cross-field rules."""
    specs = all_parameters(modalities)
    unknown = sorted(set(values) - set(specs))
    if unknown:
        raise ParameterError(f'unknown parameters {unknown}')
    for name, value in values.items():
        specs[name].check(value)
    if values.get('anchor') == ANCHOR_TIMER and not values.get('max_rate_hz', 0.0) > 0:
        raise ParameterError("anchor 'timer' needs max_rate_hz > 0 (the timer's rate)")
    diagnostics, health = values.get('diagnostics_period_s'), values.get('health_check_period_s')
    if diagnostics is not None and health is not None and diagnostics < health:
        # the health check publishes the regular message: it cannot come more often
        raise ParameterError(
            f'diagnostics_period_s ({diagnostics}) is shorter than health_check_period_s '
            f'({health}), which /diagnostics is published from: set it to at least that')
    for modality in modalities:
        fields = {
            f: values[sensor_parameter(modality, f)]
            for f in HEALTH_FIELDS
            if sensor_parameter(modality, f) in values
        }
        try:
            HealthConfig(**fields)
        except ValueError as exc:
            raise ParameterError(f'{SENSOR_PREFIX}.{modality}: {exc}') from exc
        names = [sensor_parameter(modality, s.name) for s in DECODER_PARAMETERS.get(modality, ())]
        if names and all(n in values for n in names):
            decoder_settings(values, modality)


# The launch file's arguments that set a node parameter of the same name, only when given a
# value: left empty they leave the params file's value, else the node's default, in place.
LAUNCH_OVERRIDES = ('backend', 'model_file_path', 'engine_file_path', 'force_engine_update',
                    'enable_fp16', 'use_sim_time')


def launch_overrides(arguments: Mapping[str, str]) -> dict[str, Value]:
    """The parameters that the launch file's :data:`LAUNCH_OVERRIDES` arguments (strings, as
    launch gives them) set: those given a non-empty value, 'true'/'false' as booleans for the
    boolean parameters (use_sim_time among them, rclpy's own)."""
    specs = all_parameters()
    overrides: dict[str, Value] = {}
    for name in LAUNCH_OVERRIDES:
        value = arguments.get(name, '')
        if value == '':
            continue
        boolean = name == 'use_sim_time' or isinstance(specs[name].default, bool)
        overrides[name] = value.lower() == 'true' if boolean else value
    return overrides


QOS_HINT = f"its inputs' QoS is {sensor_parameter('<modality>', 'qos')} and qos_depth"


def unknown_parameters(names: Iterable[str], known: Iterable[str],
                       qos_hint: str = QOS_HINT) -> list[str]:
    """Each of ``names`` that is not in ``known``, sorted, with the nearest known name when
    one is close (``'min_confidance (did you mean min_confidence?)'``): ROS ignores a value
    set for a parameter the node does not declare, so a misspelt one would go unnoticed.
    A ROS QoS override (``qos_overrides./rgb/image.subscription.reliability``) is named with
    ``qos_hint``, what sets the node's QoS instead: the node takes none (rclpy declares them
    only for the publishers and subscriptions created to take them)."""
    known = list(known)
    hints = []
    for name in sorted(set(names) - set(known)):
        close = difflib.get_close_matches(name, known, n=1)
        if name.startswith('qos_overrides.'):
            hints.append(f'{name} (this node takes no QoS overrides; {qos_hint})')
        else:
            hints.append(f'{name} (did you mean {close[0]}?)' if close else name)
    return hints


def health_config(values: Mapping[str, Any], modality: str) -> HealthConfig:
    """The :class:`HealthConfig` of one sensor from full parameter values."""
    return HealthConfig(**{f: values[sensor_parameter(modality, f)] for f in HEALTH_FIELDS})


def decoder_settings(values: Mapping[str, Any], modality: str) -> ModalitySettings:
    """The decoder settings of one sensor (None for rgb) from full parameter values."""

    def get(name: str) -> Any:
        return values[sensor_parameter(modality, name)]

    try:
        if modality == 'depth':
            return DepthSettings(get('min_m'), get('max_m') or math.inf)
        if modality == 'thermal':
            planck = [float(v) for v in get('planck')]
            if len(planck) != len(dataclass_fields(PlanckCalibration)):
                raise SensorInputError(f'planck needs [R1, R2, B, F, O], got {planck}')
            return ThermalSettings(get('semantics'), get('gain'), get('offset'), get('unit'),
                                   PlanckCalibration(*planck))
        if modality == 'polarization':
            layout = list(get('layout'))
            if len(layout) != 4:
                raise SensorInputError(f'layout needs 4 angles, got {layout}')
            return PolarizationSettings(
                ((layout[0], layout[1]), (layout[2], layout[3])), get('resolution')
            )
    except SensorInputError as exc:
        raise ParameterError(f'{SENSOR_PREFIX}.{modality}: {exc}') from exc
    return None


def defaults(modalities: Sequence[str] = MODALITIES) -> dict[str, Value]:
    return {name: spec.default for name, spec in all_parameters(modalities).items()}


def flatten(tree: Mapping[str, Any], prefix: str = '') -> dict[str, Any]:
    """Nested YAML mappings -> dotted ROS parameter names."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f'{prefix}{key}'
        if isinstance(value, Mapping):
            flat.update(flatten(value, f'{name}.'))
        else:
            flat[name] = value
    return flat


def node_section_applies(key: Any, node_name: str, namespace: str | None = None) -> bool:
    """Whether a params file's section ``key`` applies to node ``node_name`` in ``namespace``,
    as rclpy matches it: a key is absolute ('mmp_segmentation' is '/mmp_segmentation'), '/*'
    stands for one name and '/**' for any number ('/**', '/**/mmp_front', '/robot1/*').
    ``namespace`` None: in any namespace (the key's last name is the node's, or a wildcard)."""
    key = str(key)
    if namespace is None:
        return key.rstrip('/').rsplit('/', 1)[-1] in (node_name, '*', '**')
    pattern = re.escape(key if key.startswith('/') else f'/{key}')
    pattern = pattern.replace(r'/\*\*', r'(/\w+)*').replace(r'/\*', r'(/\w+)')
    return re.fullmatch(pattern, node_full_name(node_name, namespace)) is not None


def node_full_name(node_name: str, namespace: str | None = None) -> str:
    """'/robot1/mmp_front' of node 'mmp_front' in namespace '/robot1' (or 'robot1', as the
    launch file takes it); ``namespace`` None: the name alone."""
    if namespace is None:
        return node_name
    return '/' + '/'.join([*filter(None, namespace.split('/')), node_name])


def load_params_file(path: str | Path, node_name: str = NODE_NAME, *,
                     option: str = '', namespace: str | None = None) -> dict[str, Any]:
    """The flat parameter values a ROS params file sets for node ``node_name`` in
    ``namespace`` (None: any, :func:`node_section_applies`), its sections applied in the
    file's order, as rclpy does; ``option``: the command-line option that gave ``path``
    (``--params``), named with it in every error."""
    where = f'{option} {path}' if option else f'{path}'
    try:
        with open(path, encoding='utf-8') as stream:
            try:
                document = yaml.safe_load(stream) or {}
            except (yaml.YAMLError, UnicodeDecodeError) as exc:  # or not text (a bag, a model)
                reason = ' '.join(str(exc).split())  # the parser's report spans several lines
                raise ParameterError(f'{where}: not a YAML parameters file ({reason})') from exc
    except OSError as exc:  # missing, a folder, unreadable
        raise ParameterError(f'{where}: cannot read it ({exc.strerror or exc})') from None
    if not isinstance(document, Mapping):
        raise ParameterError(f'{where}: not a ROS parameters file (a mapping of node names)')
    section: dict[str, Any] = {}
    for key, node_section in document.items():
        if node_section_applies(key, node_name, namespace) and isinstance(node_section, Mapping):
            parameters = node_section.get('ros__parameters', {})
            if not isinstance(parameters, Mapping):
                raise ParameterError(
                    f'{where}: ros__parameters of {key!r} is not a mapping of parameter names '
                    f'to values (got {parameters!r})'
                )
            section.update(flatten(parameters))
    if not section:
        raise ParameterError(
            f'{where}: no ros__parameters for node {node_full_name(node_name, namespace)!r}'
        )
    # Each value on its own, as rcl would refuse it (names of other nodes' parameters pass);
    # rules between values hold only for the merged set, which the caller checks.
    specs = all_parameters()
    for name, value in section.items():
        if name in specs:
            try:
                specs[name].check(value)
            except ParameterError as exc:
                raise ParameterError(f'{where}: {exc}') from exc
    return section
