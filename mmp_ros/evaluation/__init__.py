"""Evaluation of a recorded run: accuracy per dropout phase and modality set, latency,
fault detection times and sensor states, as a Markdown/HTML report with plots. No rclpy."""
