"""Operations: accuracy, anomalies, recommendations, custom metrics and alerts."""
