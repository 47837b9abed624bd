FROM python:3.12-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY worker ./worker
COPY scheduler ./scheduler
COPY db ./db
RUN pip install --no-cache-dir .
RUN useradd --system --uid 10001 loyalty
USER loyalty
ENV LOYALTY_LOG_FORMAT=json
ENTRYPOINT ["loyalty"]
CMD ["worker"]
