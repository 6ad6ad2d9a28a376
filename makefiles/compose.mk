# Docker Compose deployment (docker-compose.yaml), included by the root Makefile.
# Credentials: docker_env/secrets.env when it exists, else the example's defaults.

# docker-compose (v1, Debian's) or the `docker compose` plugin (v2); override with DC=...
ifeq ($(origin DC),undefined)
DC := $(if $(shell command -v docker-compose 2>/dev/null),docker-compose,docker compose)
endif
DC_PROJECT ?= genreops
DC_ENV_FILE ?= $(firstword $(wildcard docker_env/secrets.env) docker_env/secrets.env.example)
DC_WAIT_SECONDS ?= 900
DC_POLL_SECONDS ?= 5
DC_DOWN_ARGS ?=
SERVICE ?=
DC_RUN = $(DC) --project-name $(DC_PROJECT) --project-directory $(CURDIR) \
	--file $(CURDIR)/docker-compose.yaml --env-file $(CURDIR)/$(DC_ENV_FILE)

# label|service|container port|URL prefix|URL suffix, printed once the stack is healthy
DC_URLS := "Prefect UI|prefect-server|4200|http://|" "MLflow UI|mlflow|5000|http://|" \
	"Grafana (admin)|grafana|3000|http://|" "Prometheus|prometheus|9090|http://|" \
	"Triton HTTP|triton|8000|http://|/v2" "Triton gRPC|triton|8001||" \
	"Triton metrics|triton|8002|http://|/metrics" "S3 (LocalStack)|localstack|4566|http://|" \
	"PostgreSQL|postgres|5432|postgresql://genreops@|/monitoring"

.PHONY: build_and_up compose_down compose_logs compose_config compose_ps

compose_config: ## Validate docker-compose.yaml and its env files (no Docker engine needed)
	@$(DC_RUN) config --quiet && echo "docker-compose.yaml is valid (env file $(DC_ENV_FILE))"

build_and_up: compose_config ## Build the app image, start the Compose stack, wait until healthy, print URLs
	@docker info >/dev/null 2>&1 || { echo "build_and_up: no Docker engine answers (docker info failed); start Docker first"; exit 1; }
	$(DC_RUN) build
	$(DC_RUN) up -d --remove-orphans
	@echo "waiting up to $(DC_WAIT_SECONDS) s for every service to be healthy ..."
	@deadline=$$(( $$(date +%s) + $(DC_WAIT_SECONDS) )); \
	while :; do \
	  pending=""; failed=""; \
	  for id in $$($(DC_RUN) ps -a -q); do \
	    set -- $$(docker inspect -f '{{.Name}} {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}} {{.State.ExitCode}} {{index .Config.Labels "com.docker.compose.oneoff"}}' "$$id"); \
	    name=$${1#/}; [ "$$5" = True ] && continue; \
	    case "$$2/$$3" in \
	      running/healthy|running/none) ;; \
	      exited/none) [ "$$4" = 0 ] || failed="$$failed $$name" ;; \
	      */unhealthy|exited/*|dead/*) failed="$$failed $$name" ;; \
	      *) pending="$$pending $$name" ;; \
	    esac; \
	  done; \
	  if [ -n "$$failed" ]; then \
	    echo "build_and_up: failed:$$failed"; $(DC_RUN) ps; \
	    for n in $$failed; do echo "--- docker logs --tail 40 $$n"; docker logs --tail 40 "$$n" 2>&1; done; \
	    exit 1; \
	  fi; \
	  [ -z "$$pending" ] && break; \
	  if [ $$(date +%s) -ge $$deadline ]; then \
	    echo "build_and_up: still not healthy after $(DC_WAIT_SECONDS) s:$$pending"; $(DC_RUN) ps; exit 1; \
	  fi; \
	  sleep $(DC_POLL_SECONDS); \
	done
	@echo "Compose stack '$(DC_PROJECT)' is up and healthy:"
	@set -f; for entry in $(DC_URLS); do \
	  IFS='|'; set -- $$entry; unset IFS; \
	  address=$$($(DC_RUN) port "$$2" "$$3" 2>/dev/null); \
	  printf '  %-18s %s\n' "$$1" "$${address:+$$4$$address$$5}"; \
	done
	@echo "Logs: make compose_logs [SERVICE=name]; stop: make compose_down (data volumes are kept)"

compose_ps: ## Show the Compose services and their health
	$(DC_RUN) ps

compose_logs: ## Follow the Compose logs (all services, or SERVICE=name)
	$(DC_RUN) logs --follow --tail=200 $(SERVICE)

compose_down: ## Stop and remove the Compose containers; keeps data (DC_DOWN_ARGS=-v deletes the volumes)
	$(DC_RUN) down --remove-orphans $(DC_DOWN_ARGS)
