"""config/mmp.rviz: valid YAML that RViz2 reads, with an Image display per input and output."""

from pathlib import Path

import yaml

from mmp_ros.modalities import MODALITIES

RVIZ = Path(__file__).resolve().parents[1] / 'config' / 'mmp.rviz'


def _displays() -> list[dict]:
    document = yaml.safe_load(RVIZ.read_text())
    return document['Visualization Manager']['Displays']


def test_every_input_and_the_coloured_outputs_have_an_image_display():
    displays = _displays()
    topics = {d['Topic']['Value']: d for d in displays}
    assert set(topics) == {*(f'/{m}/image' for m in MODALITIES), '/segmentation/color',
                           '/segmentation/overlay'}
    assert all(d['Class'] == 'rviz_default_plugins/Image' and d['Enabled'] for d in displays)


def test_inputs_are_best_effort_and_outputs_reliable_as_published():
    for display in _displays():
        qos = display['Topic']
        expected = 'Reliable' if qos['Value'].startswith('/segmentation/') else 'Best Effort'
        assert qos['Reliability Policy'] == expected, qos['Value']
        assert qos['Durability Policy'] == 'Volatile'


def test_labels_keep_their_palette_colours_and_the_legend_is_documented():
    by_topic = {d['Topic']['Value']: d for d in _displays()}
    # Normalizing would rescale palette colours; depth and thermal need it to be visible.
    assert not by_topic['/segmentation/color']['Normalize Range']
    assert by_topic['/thermal/image']['Normalize Range']
    text = RVIZ.read_text()
    assert 'label_info' in text and 'legend' in text
