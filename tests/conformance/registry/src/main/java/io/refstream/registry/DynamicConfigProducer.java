package io.refstream.registry;

import io.apicurio.common.apps.config.DynamicConfigPropertyList;
import java.util.List;
import javax.enterprise.context.ApplicationScoped;
import javax.enterprise.inject.Produces;

/**
 * The registry's config-index extension publishes its list of runtime-editable properties at build
 * time, but that extension's build half is not on Maven Central. None is editable here: every
 * setting is the static one from application.properties.
 */
@ApplicationScoped
public class DynamicConfigProducer {
  @Produces
  @ApplicationScoped
  DynamicConfigPropertyList dynamicConfigProperties() {
    return new DynamicConfigPropertyList(List.of());
  }
}
