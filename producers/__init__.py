"""Kafka producers: synthetic flash-sale traffic and real data set replay."""
