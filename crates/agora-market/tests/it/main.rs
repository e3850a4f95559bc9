//! Integration tests for agora-market: stories, properties, rejections and fixtures.

mod harness;
mod props;
mod rules;
mod scenarios;
mod units;
